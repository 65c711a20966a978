"""A small PostgreSQL client on the standard library alone (the example app installs nothing): protocol 3
over TCP, password authentication (SCRAM-SHA-256, as RDS PostgreSQL and PostgreSQL 14+ use by default, or
md5, or cleartext), and simple queries whose rows come back as lists of strings (None for NULL).

A real app would use psycopg; this keeps examples/app runnable by any Python 3 with no pip step."""

import base64
import hashlib
import hmac
import os
import socket
import struct


class Error(Exception):
    """An error the server reported (with its SQLSTATE code) or a broken connection."""

    def __init__(self, message, code=None):
        super().__init__(message)
        self.code = code


def literal(value):
    """A value as an SQL literal (standard_conforming_strings, the default since PostgreSQL 9.1)."""
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


class Connection:
    def __init__(self, host, port, database, user, password, timeout=10):
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buffer = b""
        params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
        self.sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        self._authenticate(user, password)
        while True:
            kind, body = self._read()
            if kind == b"Z":
                break
            if kind == b"E":
                raise _error(body)

    def _authenticate(self, user, password):
        while True:
            kind, body = self._read()
            if kind == b"E":
                raise _error(body)
            if kind != b"R":
                raise Error(f"unexpected message {kind!r} during authentication")
            (code,) = struct.unpack("!i", body[:4])
            if code == 0:
                return
            if code == 3:
                self._send(b"p", password.encode() + b"\0")
            elif code == 5:
                salt = body[4:8]
                inner = hashlib.md5(password.encode() + user.encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + salt).hexdigest()
                self._send(b"p", b"md5" + outer.encode() + b"\0")
            elif code == 10:
                self._scram(password)
            else:
                raise Error(f"authentication method {code} is not supported")

    def _scram(self, password):
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n=,r={nonce}"
        first = ("n,," + first_bare).encode()
        self._send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
        kind, body = self._read()
        if kind == b"E":
            raise _error(body)
        server_first = body[4:].decode()
        fields = dict(part.split("=", 1) for part in server_first.split(","))
        if not fields["r"].startswith(nonce):
            raise Error("SCRAM: the server's nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        final_bare = f"c=biws,r={fields['r']}"
        auth_message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        self._send(b"p", f"{final_bare},p={base64.b64encode(proof).decode()}".encode())
        kind, body = self._read()
        if kind == b"E":
            raise _error(body)
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        expected = base64.b64encode(hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode()
        if body[4:].decode() != f"v={expected}":
            raise Error("SCRAM: the server's signature is wrong")

    def query(self, sql):
        """Runs one simple query (several statements run in one implicit transaction); the rows of the
        last statement that returned any."""
        self._send(b"Q", sql.encode() + b"\0")
        rows, error = [], None
        while True:
            kind, body = self._read()
            if kind == b"T":
                rows = []
            elif kind == b"D":
                (count,) = struct.unpack("!h", body[:2])
                at, row = 2, []
                for _ in range(count):
                    (size,) = struct.unpack("!i", body[at:at + 4])
                    at += 4
                    if size < 0:
                        row.append(None)
                    else:
                        row.append(body[at:at + size].decode())
                        at += size
                rows.append(row)
            elif kind == b"E":
                error = _error(body)
            elif kind == b"Z":
                if error:
                    raise error
                return rows

    def close(self):
        try:
            self._send(b"X", b"")
        except OSError:
            pass
        self.sock.close()

    def _send(self, kind, body):
        self.sock.sendall(kind + struct.pack("!i", len(body) + 4) + body)

    def _read(self):
        header = self._exactly(5)
        kind, length = header[:1], struct.unpack("!i", header[1:])[0]
        return kind, self._exactly(length - 4)

    def _exactly(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Error("the database closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data


def _error(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1]] = part[1:].decode(errors="replace")
    return Error(f"{fields.get(b'S', 'ERROR')}: {fields.get(b'M', 'unknown error')}", fields.get(b"C"))
