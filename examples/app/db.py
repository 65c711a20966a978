"""Where the database is and how to log in, as the template delivers it to every environment: the
environment properties DATABASE_HOST, DATABASE_PORT and DATABASE_NAME, and the credentials as Elastic
Beanstalk's secret environment variable DATABASE_CREDENTIALS (the Secrets Manager secret's whole
SecretString: {"username": ..., "password": ...}). Shared by the app and its migration command."""

import json
import os
import re

import pg

HERE = os.path.dirname(os.path.abspath(__file__))


def settings():
    """The connection settings, or None when no database is configured (no DATABASE_HOST)."""
    host = os.environ.get("DATABASE_HOST")
    if not host:
        return None
    credentials = {}
    raw = os.environ.get("DATABASE_CREDENTIALS")
    if raw:
        try:
            credentials = json.loads(raw)
        except ValueError:
            credentials = {}
    return {
        "host": host,
        "port": int(os.environ.get("DATABASE_PORT") or credentials.get("port") or 5432),
        "database": os.environ.get("DATABASE_NAME") or credentials.get("dbname") or "app",
        "user": credentials.get("username") or os.environ.get("DATABASE_USER", ""),
        "password": credentials.get("password") or os.environ.get("DATABASE_PASSWORD", ""),
    }


def connect(timeout=10):
    s = settings()
    if s is None:
        raise pg.Error("no database configured (DATABASE_HOST is not set)")
    return pg.Connection(s["host"], s["port"], s["database"], s["user"], s["password"], timeout=timeout)


def migrations():
    """This release's migrations, oldest first: (version, name, path) from migrations/NNNN_name.sql."""
    found = []
    folder = os.path.join(HERE, "migrations")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        match = re.match(r"^(\d+)_(\w+)\.sql$", name)
        if match:
            found.append((int(match.group(1)), name[:-4], os.path.join(folder, name)))
    return found


def expected_schema():
    """The schema version this release's code is written for: its newest migration."""
    found = migrations()
    return found[-1][0] if found else 0
