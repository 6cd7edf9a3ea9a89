#!/usr/bin/python3
"""Managed by Salt (alertmanager formula). Alertmanager's webhook receiver
for the alert log:

    cluster-alert-log PORT FILE MAX_BYTES

Listens on 127.0.0.1:PORT; each POSTed notification (Alertmanager's webhook
JSON) adds one line to FILE per alert it carries: the time it was received,
the notification's receiver, and the alert's status, labels, annotations,
startsAt and endsAt. Past MAX_BYTES the file is moved to FILE.1 first (one
generation kept). Anything else (a body that is not such JSON, too large,
another method) is answered with an error and writes nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

MAX_BODY = 1 << 20
FIELDS = ("status", "labels", "annotations", "startsAt", "endsAt")


def lines(body: bytes, received: float) -> list[str]:
    """The log lines for one notification; ValueError if it is not one."""
    notification = json.loads(body)
    if not isinstance(notification, dict) or not isinstance(notification.get("alerts"), list):
        raise ValueError("not an Alertmanager notification")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(received))
    out = []
    for alert in notification["alerts"]:
        if not isinstance(alert, dict):
            raise ValueError("an alert is not an object")
        entry = {"received": stamp, "receiver": notification.get("receiver")}
        entry.update({field: alert.get(field) for field in FIELDS})
        out.append(json.dumps(entry, sort_keys=True))
    return out


class Log:
    def __init__(self, path: str, max_bytes: int) -> None:
        self.path, self.max_bytes, self.lock = path, max_bytes, Lock()

    def append(self, new: list[str]) -> None:
        with self.lock:
            try:
                if os.path.getsize(self.path) > self.max_bytes:
                    os.replace(self.path, self.path + ".1")
            except FileNotFoundError:
                pass
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("".join(line + "\n" for line in new))


def handler(log: Log) -> type[BaseHTTPRequestHandler]:
    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                size = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.send_error(411)
                return
            if not 0 < size <= MAX_BODY:
                self.send_error(413)
                return
            try:
                new = lines(self.rfile.read(size), time.time())
            except ValueError as err:
                self.send_error(400, str(err)[:100])
                return
            log.append(new)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass  # the log file is the record; no line per request in the journal

    return Receiver


def main() -> None:
    port, path, max_bytes = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    ThreadingHTTPServer(("127.0.0.1", port), handler(Log(path, max_bytes))).serve_forever()


if __name__ == "__main__":
    main()
