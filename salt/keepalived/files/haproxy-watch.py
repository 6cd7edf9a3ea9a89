#!/usr/bin/python3
"""Managed by Salt (keepalived formula). Asks HAProxy's health socket
(monitor-uri: 200 while every backend has a server UP, 503 otherwise) every
INTERVAL seconds and keeps two keepalived track files up to date:

    DOWN_FILE      1 while nothing answers there (HAProxy dead, or restarted
                   and not listening yet); keepalived: weight 0, so FAULT.
    DEGRADED_FILE  1 while the answer is not a 200, or comes too late (some
                   backend has no server UP; HAProxy stuck); keepalived:
                   a negative weight, the director's priority drops.

One resident process instead of a check command started every second: on a
user-mode director the two checks it replaces cost a third of a host core.
A file changes only after FALL failed (or RISE good) answers in a row, and
is rewritten whenever its content differs from the watcher's view (e.g.
keepalived created it anew at start).

    keepalived-haproxy-watch SOCKET DOWN_FILE DEGRADED_FILE
        [--interval 0.25] [--timeout 1] [--fall 2] [--rise 4]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

REQUEST = b"GET /healthy HTTP/1.0\r\n\r\n"


def ask(path: str, timeout: float) -> str:
    """One question: "ok" (200), "degraded" (another answer, or none in
    time) or "down" (no socket, or nobody listening on it)."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(REQUEST)
            head = sock.recv(64)
    except (FileNotFoundError, ConnectionRefusedError):
        return "down"
    except OSError:  # a timeout, a reset: it listens but does not answer well
        return "degraded"
    return "ok" if head.split(b" ", 2)[1:2] == [b"200"] else "degraded"


class Debounced:
    """A failing/healthy flag that changes after `fall` failures or `rise`
    successes in a row; the first observation sets it at once."""

    def __init__(self, fall: int, rise: int) -> None:
        self.fall, self.rise = fall, rise
        self.failing: bool | None = None
        self.streak = 0

    def observe(self, failing: bool) -> bool:
        if self.failing is None or failing == self.failing:
            self.failing, self.streak = failing, 0
        else:
            self.streak += 1
            if self.streak >= (self.fall if failing else self.rise):
                self.failing, self.streak = failing, 0
        return self.failing


def write_if_changed(path: str, failing: bool) -> None:
    value = "1\n" if failing else "0\n"
    try:
        with open(path, encoding="ascii") as handle:
            if handle.read() == value:
                return
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(value)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("socket")
    parser.add_argument("down_file")
    parser.add_argument("degraded_file")
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--fall", type=int, default=2)
    parser.add_argument("--rise", type=int, default=4)
    args = parser.parse_args(argv)
    for path in (args.down_file, args.degraded_file):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    down, degraded = Debounced(args.fall, args.rise), Debounced(args.fall, args.rise)
    while True:
        started = time.monotonic()
        answer = ask(args.socket, args.timeout)
        write_if_changed(args.down_file, down.observe(answer == "down"))
        write_if_changed(args.degraded_file, degraded.observe(answer != "ok"))
        time.sleep(max(0.0, args.interval - (time.monotonic() - started)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
