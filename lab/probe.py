"""The drills' client-side probe, run inside the `client` node (standard library only).

    python3 probe.py DURATION INTERVAL VIP L7_PORT NAME TIMEOUT PREFIX

Every INTERVAL seconds, for DURATION seconds or until its stdin closes, it sends one DNS query
for NAME's A record to VIP:53 and one HTTP GET, in turn to http://VIP/ (kind
http: HAProxy layer 4) and to http://VIP:L7_PORT/ (kind l7: HAProxy layer 7,
which retries elsewhere), each in its own thread with a TIMEOUT (default 1 s; an HTTP
GET of both kinds every interval doubled the load and overran a user-mode
director); a failed probe is retried once at once. Prints one
JSON document: a list of [kind, sent_at (epoch s), ok, server, retry_ok,
seconds, error], where server is the web server that answered (its address, from the
page; null for DNS), retry_ok whether the retry succeeded (null when none was
needed), seconds how long the first attempt took (answered or not) and error
what went wrong with it (the exception's class, "timeout", "HTTP 503", "rcode 2";
null when it succeeded).

Not CH TXT id.server for DNS: BIND rate-limits its built-in CHAOS answers
(a few per second per client network), which would read as an outage.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import struct
import sys
import threading
import time

TIMEOUT = 1.0
# What the page prints before the answering server's address is PREFIX (the
# catalogue's pages:server_address_prefix).
SERVER_IP = re.compile(rb"^$")


def failure(exc: Exception) -> str:
    """What went wrong, short: "timeout" or the exception's class name
    (e.g. ConnectionRefusedError, RemoteDisconnected)."""
    return "timeout" if isinstance(exc, (socket.timeout, TimeoutError)) else type(exc).__name__


def http_once(vip: str, port: int = 80) -> tuple[bool, str | None, str | None]:
    """(ok, answering server, error)."""
    conn = http.client.HTTPConnection(vip, port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return False, None, failure(exc)
    finally:
        conn.close()
    match = SERVER_IP.search(body)
    ok = response.status == 200
    return ok, match.group(1).decode() if match else None, None if ok else f"HTTP {response.status}"


def dns_query(ident: int, name: str) -> bytes:
    """A recursion-desired query for NAME's A record."""
    question = b"".join(bytes([len(label)]) + label for label in name.encode().split(b".")) + b"\x00"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", 1, 1)


def dns_once(vip: str, name: str) -> tuple[bool, None, str | None]:
    """Answered with NOERROR and at least one record (before the timeout):
    (ok, None, error)."""
    ident = random.randrange(65536)
    deadline = time.monotonic() + TIMEOUT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(dns_query(ident, name), (vip, 53))
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                answer = sock.recv(512)
                if len(answer) >= 12 and struct.unpack("!H", answer[:2])[0] == ident:
                    break
        except OSError as exc:
            return False, None, failure(exc)
    rcode, ancount = answer[3] & 0x0F, struct.unpack("!H", answer[6:8])[0]
    if rcode:
        return False, None, f"rcode {rcode}"
    return ancount > 0, None, None if ancount else "no answer records"


def main() -> None:
    global TIMEOUT, SERVER_IP
    duration, interval, vip, l7_port, name = (
        float(sys.argv[1]),
        float(sys.argv[2]),
        sys.argv[3],
        int(sys.argv[4]),
        sys.argv[5],
    )
    TIMEOUT = float(sys.argv[6])
    SERVER_IP = re.compile(re.escape(sys.argv[7].encode()) + rb"([0-9.]+)<")
    results: list[list] = []
    lock = threading.Lock()

    def probe(kind: str, once) -> None:
        sent = time.time()
        ok, server, error = once(*target[kind])
        seconds = time.time() - sent
        retry_ok = None if ok else once(*target[kind])[0]
        with lock:
            results.append([kind, sent, ok, server, retry_ok, round(seconds, 4), error])

    stop = threading.Event()

    def until_stdin_closes() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    target = {"http": (vip,), "l7": (vip, l7_port), "dns": (vip, name)}
    threads: list[threading.Thread] = []
    start = time.monotonic()
    tick = 0
    while not stop.is_set() and time.monotonic() < start + duration:
        web = "http" if tick % 2 == 0 else "l7"
        for kind, once in ((web, http_once), ("dns", dns_once)):
            thread = threading.Thread(target=probe, args=(kind, once), daemon=True)
            thread.start()
            threads.append(thread)
        tick += 1
        if tick % 100 == 0:
            threads = [t for t in threads if t.is_alive()]
        time.sleep(max(0.0, start + tick * interval - time.monotonic()))
    for thread in threads:
        thread.join(3 * TIMEOUT)
    json.dump(sorted(results, key=lambda r: r[1]), sys.stdout)


if __name__ == "__main__":
    main()
