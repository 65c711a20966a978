"""Applies this release's pending migrations (migrations/NNNN_name.sql, in order), each in one transaction
with its row in schema_migrations, under an advisory lock so two runs at once (two instances, a retried
deployment) apply each migration exactly once: what ran before is skipped and says so.

Elastic Beanstalk runs it as a leader_only container command (.ebextensions/db-migrate.config) on one
instance of every new environment, after the bundle is extracted and before the new version starts, with
the environment's properties and secrets. A failure exits 1 with the server's message, which fails the
deployment; the staged environment never serves and production is untouched."""

import sys
import time

import db
import pg

LOCK = 7_262_021  # any constant: the advisory lock that serializes migration runs


def main():
    settings = db.settings()
    if settings is None:
        print("no database configured (DATABASE_HOST is not set): nothing to migrate")
        return 0
    where = f"{settings['host']}:{settings['port']}/{settings['database']}"
    try:
        conn = db.connect(timeout=10)
    except (OSError, pg.Error) as e:
        print(f"could not connect to the database at {where}: {e}", file=sys.stderr)
        return 1
    try:
        conn.query(f"SELECT pg_advisory_lock({LOCK})")
        conn.query(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {int(row[0]) for row in conn.query("SELECT version FROM schema_migrations")}
        for version, name, path in db.migrations():
            if version in applied:
                print(f"{name}: already applied")
                continue
            with open(path, encoding="utf-8") as f:
                sql = f.read().strip().rstrip(";")
            started = time.monotonic()
            try:
                # One simple query: the migration and its record commit together or not at all.
                conn.query(
                    f"BEGIN; {sql}; INSERT INTO schema_migrations (version, name) "
                    f"VALUES ({version}, {pg.literal(name)}); COMMIT"
                )
            except pg.Error as e:
                print(f"migration {name} failed on {where}: {e}", file=sys.stderr)
                return 1
            print(f"{name}: applied in {int((time.monotonic() - started) * 1000)} ms")
        found = conn.query("SELECT coalesce(max(version), 0) FROM schema_migrations")[0][0]
        print(f"schema version {found} on {where}")
        return 0
    except (OSError, pg.Error) as e:
        print(f"migrating {where} failed: {e}", file=sys.stderr)
        return 1
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
