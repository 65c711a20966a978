"""The example web app beanswap deploys: standard library only, so it runs anywhere Python 3 does.

It listens on $PORT (as Elastic Beanstalk's Procfile platforms require) and answers:
  /         an HTML page naming its version
  /version  the version as plain text (the smoke-test and swap version checks read it)
  /health   the health check path: 200 "ok"
  /api/info JSON: version, environment name, whether a database is configured, and where (or "no database
            configured", as the local pipeline run has none)

A few environment variables make it misbehave on purpose, so tests can prove failures are caught:
  HEALTH_STATUS  status code /health answers (default 200)
  SLOW_MS        delay every answer by this many milliseconds
  START_DELAY_SECONDS  wait this long before listening
  EXIT_AFTER_SECONDS   exit(1) after this long
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version():
    try:
        with open(os.path.join(HERE, "VERSION"), encoding="utf-8") as f:
            return f.read().strip() or "dev"
    except OSError:
        return os.environ.get("APP_VERSION", "dev")


VERSION = read_version()


def database_status():
    """Where the database is, from the environment properties the template sets (DATABASE_HOST and
    DATABASE_PORT, or DATABASE_URL); the local pipeline run has no database and sets neither."""
    host = os.environ.get("DATABASE_HOST")
    if host:
        return f"database at {host}:{os.environ.get('DATABASE_PORT', '5432')}"
    if os.environ.get("DATABASE_URL"):
        return "database at DATABASE_URL"
    return "no database configured"


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
        if path == "/version":
            self.answer(200, VERSION + "\n")
        elif path == "/health":
            status = int(os.environ.get("HEALTH_STATUS", "200") or 200)
            self.answer(status, "ok\n" if status < 400 else "unhealthy\n")
        elif path == "/api/info":
            info = {
                "version": VERSION,
                "environment": os.environ.get("ENVIRONMENT_NAME", ""),
                "database": bool(os.environ.get("DATABASE_HOST") or os.environ.get("DATABASE_URL")),
                "database_status": database_status(),
            }
            self.answer(200, json.dumps(info), "application/json")
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
