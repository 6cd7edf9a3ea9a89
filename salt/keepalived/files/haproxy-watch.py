#!/usr/bin/python3
"""Managed by Salt (keepalived formula). Asks HAProxy's health socket
(GET /healthy: 200 "ok" while every backend has a server UP, 503 "partial
BACKEND" while one has none, 503 "none" while none has one, 503 "stopping"
from a worker handing over to a reloaded one) every INTERVAL seconds and
keeps three keepalived track files up to date:

    DOWN_FILE      1 while nothing answers there (HAProxy dead, or restarted
                   and not listening yet); keepalived: weight 0, so FAULT.
    DEGRADED_FILE  1 while the answer is not a 200, or comes too late (some
                   backend has no server UP; HAProxy stuck); keepalived:
                   a negative weight, the director's priority drops. A 503
                   counts at once (HAProxy debounced its checks already).
    ISOLATED_FILE  1 while this director, having reached servers for SETTLE
                   seconds in a row since the watcher started, reaches none
                   at all: HAProxy has none UP
                   in any backend and IPVS (IPVS_TABLE, where the kernel has
                   it) none in any service, as when its internal link is
                   cut; keepalived: weight 0, so FAULT. A director cut off
                   from its servers gives up the VIPs instead of holding
                   them, unheard, and answering with errors once its cable
                   is back; it takes them back only once its own checks
                   pass. Never set before then: a cluster being built, whose
                   servers still need the NAT gateway, keeps its VIPs (HAProxy
                   and IPVS count a server UP until its first checks fail).

One resident process instead of a check command started every second: on a
user-mode director the two checks it replaces cost a third of a host core.
A file changes only after FALL failed (or RISE good) answers in a row, and
is rewritten whenever its content differs from the watcher's view (e.g.
keepalived created it anew at start). A "stopping" answer is no answer: a
worker that is handing over has stopped its backends, and would otherwise
read as reaching no server during every reload.

    keepalived-haproxy-watch SOCKET DOWN_FILE DEGRADED_FILE ISOLATED_FILE
        [--ipvs-table /proc/net/ip_vs] [--settle 10] [--interval 0.25]
        [--timeout 1] [--fall 2] [--rise 4]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

REQUEST = b"GET /healthy HTTP/1.0\r\n\r\n"


def answer_of(reply: bytes) -> str:
    """A reply of HAProxy's health frontend -> "ok", "none" (no backend has
    a server UP), "partial" (some backend has none), "stopping" (a worker
    handing over to a reloaded one) or "degraded" (anything else)."""
    head, _, body = reply.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if status == [b"200"]:
        return "ok"
    if status == [b"503"] and body.strip() in (b"none", b"stopping"):
        return body.strip().decode()
    return "partial" if status == [b"503"] and body.startswith(b"partial ") else "degraded"


def ask(path: str, timeout: float) -> str:
    """One question: "ok", "none", "partial", "stopping", "degraded" (see
    answer_of; or no answer in time) or "down" (no socket, or nobody
    listening on it)."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(REQUEST)
            reply = b""
            while chunk := sock.recv(512):  # HTTP/1.0: HAProxy closes after its answer
                reply += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        return "down"
    except OSError:  # a timeout, a reset: it listens but does not answer well
        return "degraded"
    return answer_of(reply)


def ipvs_real_servers(table: str) -> int | None:
    """How many real servers the kernel's IPVS table lists (keepalived
    removes those failing their checks); None without IPVS."""
    try:
        with open(table, encoding="ascii") as handle:
            return sum(1 for line in handle if line.lstrip().startswith("->") and "RemoteAddress" not in line)
    except OSError:
        return None


class Debounced:
    """A failing/healthy flag that changes after `fall` failures or `rise`
    successes in a row; the first observation sets it at once."""

    def __init__(self, fall: int, rise: int) -> None:
        self.fall, self.rise = fall, rise
        self.failing: bool | None = None
        self.streak = 0

    def observe(self, failing: bool, at_once: bool = False) -> bool:
        """The flag after one more observation; `at_once`: a failure that
        counts without waiting for `fall` (one already debounced upstream)."""
        if self.failing is None or failing == self.failing or (failing and at_once):
            self.failing, self.streak = failing, 0
        else:
            self.streak += 1
            if self.streak >= (self.fall if failing else self.rise):
                self.failing, self.streak = failing, 0
        return self.failing


class Reach:
    """Whether a director that reached servers for `settle` seconds in a row
    (since the watcher started) now reaches none."""

    def __init__(self, settle: float) -> None:
        self.settle = settle
        self.since: float | None = None  # reaching servers since (monotonic s)
        self.settled = False

    def lost(self, reaches: bool, now: float) -> bool:
        if not reaches:
            self.since = None
            return self.settled
        if self.since is None:
            self.since = now
        self.settled = self.settled or now - self.since >= self.settle
        return False


class View:
    """The three flags as the answers so far have them."""

    NAMES = ("down", "degraded", "isolated")

    def __init__(self, fall: int, rise: int, settle: float) -> None:
        self.flags = {name: Debounced(fall, rise) for name in self.NAMES}
        self.reach = Reach(settle)

    def observe(self, answer: str, ipvs_servers: int | None, now: float) -> dict[str, bool] | None:
        """The flags after one answer (and IPVS's count of real servers);
        None for a "stopping" answer, which changes nothing."""
        if answer == "stopping":
            return None
        reaches = answer not in ("none", "down") or bool(ipvs_servers)
        failing = {
            "down": answer == "down",
            "degraded": answer != "ok",
            "isolated": self.reach.lost(reaches, now),
        }
        # HAProxy's own verdict on its servers (its checks have their fall)
        # lowers the priority at once: a director whose cut cable is mended
        # just as its last server goes DOWN must not win the VIPs back.
        at_once = {"degraded": answer in ("none", "partial")}
        return {name: self.flags[name].observe(failing[name], at_once.get(name, False)) for name in self.NAMES}


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
    parser.add_argument("isolated_file")
    parser.add_argument("--ipvs-table", default="/proc/net/ip_vs")
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--fall", type=int, default=2)
    parser.add_argument("--rise", type=int, default=4)
    args = parser.parse_args(argv)
    files = {"down": args.down_file, "degraded": args.degraded_file, "isolated": args.isolated_file}
    for path in files.values():
        os.makedirs(os.path.dirname(path), exist_ok=True)
    view = View(args.fall, args.rise, args.settle)
    while True:
        started = time.monotonic()
        answer = ask(args.socket, args.timeout)
        flags = view.observe(answer, ipvs_real_servers(args.ipvs_table), started)
        if flags is None:  # the old worker of a reload: ask the new one soon
            time.sleep(args.interval / 5)
            continue
        for name, path in files.items():
            write_if_changed(path, flags[name])
        time.sleep(max(0.0, args.interval - (time.monotonic() - started)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
