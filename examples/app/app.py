"""The example web app beanswap deploys: standard library only, so it runs anywhere Python 3 does.

It listens on $PORT (as Elastic Beanstalk's Procfile platforms require) and answers:
  /           an HTML page naming its version
  /version    the version as plain text (the smoke-test and swap version checks read it)
  /health     the health check path: 200 "ok" (it does not touch the database: an instance is healthy
              while the shared database is down, and the load balancer keeps it)
  /api/info   JSON: version, environment name, whether a database is configured and where, and the schema
              version this release expects (its newest migration) and the one the database has
  /api/orders writes an order and reads the newest ones (the load probe's path): a release whose schema
              expects the `note` column (migration 0002) writes and reads it too; 500 with the database's
              error when the schema does not fit this release's queries

The database comes from the environment properties DATABASE_HOST/PORT/NAME and the secret environment
variable DATABASE_CREDENTIALS (db.py); migrate.py changes its schema at deployment
(.ebextensions/db-migrate.config). Without DATABASE_HOST the app runs without a database and says so.

A few environment variables make it misbehave on purpose, so tests can prove failures are caught:
  HEALTH_STATUS  status code /health answers (default 200); a file HEALTH_STATUS in the process's working
                 directory, read at every check, overrides it (a switch a test flips on one instance)
  SLOW_MS        delay every answer by this many milliseconds
  START_DELAY_SECONDS  wait this long before listening
  EXIT_AFTER_SECONDS   exit(1) after this long
  ERROR_PERCENT  answer this share of requests (all but /health and the load balancer's health checks, whose
                 User-Agent is ELB-HealthChecker/2.0, so the load balancer keeps the instance)
                 with 500, deterministically: with 5, every 20th request of this process fails. Also read
                 from a file ERROR_PERCENT in the bundle: a release that ships the bug (`beanswap demo
                 --bad-release`), caught by the swap's bake after the move.
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import db
import pg

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    try:
        with open(os.path.join(HERE, "VERSION"), encoding="utf-8") as f:
            return f.read().strip() or "dev"
    except OSError:
        return os.environ.get("APP_VERSION", "dev")


VERSION = read_version()


def read_error_percent():
    raw = os.environ.get("ERROR_PERCENT", "")
    if not raw:
        try:
            with open(os.path.join(HERE, "ERROR_PERCENT"), encoding="utf-8") as f:
                raw = f.read().strip()
        except OSError:
            raw = ""
    try:
        return max(0.0, min(100.0, float(raw or 0)))
    except ValueError:
        return 0.0


ERROR_PERCENT = read_error_percent()


class Faults:
    """Every Nth request (other than the health check) fails, N = 100 / ERROR_PERCENT."""

    def __init__(self, percent):
        self.every = round(100 / percent) if percent > 0 else 0
        self.count, self.lock = 0, threading.Lock()

    def fail_now(self):
        if not self.every:
            return False
        with self.lock:
            self.count += 1
            return self.count % self.every == 0


FAULTS = Faults(ERROR_PERCENT)


def database_status():
    """Where the database is, from the environment properties the template sets (DATABASE_HOST and
    DATABASE_PORT, or DATABASE_URL); the local pipeline run sets them too, for the PostgreSQL it starts
    and shares between the environments as RDS is on AWS. With neither, the app runs without one."""
    host = os.environ.get("DATABASE_HOST")
    if host:
        return f"database at {host}:{os.environ.get('DATABASE_PORT', '5432')}"
    if os.environ.get("DATABASE_URL"):
        return "database at DATABASE_URL"
    return "no database configured"


SCHEMA = db.expected_schema()


class Pool:
    """A few reused connections: opening one per request would cost the database a process each time."""

    def __init__(self, size=8):
        self.size, self.idle, self.lock = size, [], threading.Lock()

    def run(self, sql):
        with self.lock:
            conn = self.idle.pop() if self.idle else None
        if conn is None:
            conn = db.connect(timeout=5)
        try:
            rows = conn.query(sql)
        except pg.Error as e:
            if e.code is None:  # the connection broke, not the query
                conn.close()
                raise
            self._give_back(conn)
            raise
        except OSError:
            conn.close()
            raise
        self._give_back(conn)
        return rows

    def _give_back(self, conn):
        with self.lock:
            if len(self.idle) < self.size:
                self.idle.append(conn)
                return
        conn.close()


POOL = Pool()


def schema_found():
    rows = POOL.run("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return int(rows[0][0])


def orders():
    """One write and one read of the orders table, as this release's schema has it."""
    if SCHEMA >= 2:
        note = pg.literal(f"written by {VERSION}")
        inserted = POOL.run(f"INSERT INTO orders (item, note) VALUES ('probe', {note}) RETURNING id")
        latest = POOL.run("SELECT id, item, note FROM orders ORDER BY id DESC LIMIT 3")
        latest = [{"id": int(r[0]), "item": r[1], "note": r[2]} for r in latest]
    else:
        inserted = POOL.run("INSERT INTO orders (item) VALUES ('probe') RETURNING id")
        latest = POOL.run("SELECT id, item FROM orders ORDER BY id DESC LIMIT 3")
        latest = [{"id": int(r[0]), "item": r[1]} for r in latest]
    return {"version": VERSION, "schema_expected": SCHEMA, "inserted": int(inserted[0][0]), "latest": latest}


def health_status():
    """What /health answers: the file HEALTH_STATUS in the working directory if there is one, else the
    environment variable, else 200."""
    try:
        with open("HEALTH_STATUS", encoding="utf-8") as f:
            return int(f.read().strip() or 200)
    except (OSError, ValueError):
        return int(os.environ.get("HEALTH_STATUS", "200") or 200)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, content_type="text/plain; charset=utf-8"):
        data = body.encode("utf-8")
        slow = int(os.environ.get("SLOW_MS", "0") or 0)
        if slow:
            time.sleep(slow / 1000)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        checker = self.headers.get("User-Agent", "").startswith("ELB-HealthChecker")
        if path != "/health" and not checker and FAULTS.fail_now():
            self.answer(500, "injected failure (ERROR_PERCENT)\n")
        elif path == "/version":
            self.answer(200, VERSION + "\n")
        elif path == "/health":
            status = health_status()
            self.answer(status, "ok\n" if status < 400 else "unhealthy\n")
        elif path == "/api/info":
            info = {
                "version": VERSION,
                "environment": os.environ.get("ENVIRONMENT_NAME", ""),
                "database": bool(os.environ.get("DATABASE_HOST") or os.environ.get("DATABASE_URL")),
                "database_status": database_status(),
                "schema": {"expected": SCHEMA, "found": None},
            }
            if db.settings() is not None:
                try:
                    info["schema"]["found"] = schema_found()
                except (OSError, pg.Error) as e:
                    info["schema"]["error"] = str(e)
            self.answer(200, json.dumps(info), "application/json")
        elif path == "/api/orders":
            if db.settings() is None:
                self.answer(503, json.dumps({"error": "no database configured"}), "application/json")
                return
            try:
                self.answer(200, json.dumps(orders()), "application/json")
            except (OSError, pg.Error) as e:
                body = {"version": VERSION, "schema_expected": SCHEMA, "error": str(e)}
                self.answer(500, json.dumps(body), "application/json")
        elif path == "/":
            self.answer(
                200,
                f"<!doctype html><title>shop {VERSION}</title><h1>shop</h1><p>version {VERSION}</p>"
                f"<p>{database_status()}</p>\n",
                "text/html; charset=utf-8",
            )
        else:
            self.answer(404, "not found\n")

    def log_message(self, format, *args):
        pass


def main():
    delay = float(os.environ.get("START_DELAY_SECONDS", "0") or 0)
    if delay:
        time.sleep(delay)
    exit_after = float(os.environ.get("EXIT_AFTER_SECONDS", "0") or 0)
    if exit_after:
        threading.Timer(exit_after, lambda: os._exit(1)).start()
    port = int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), port), Handler)
    server.daemon_threads = True
    print(f"shop {VERSION} listening on port {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
