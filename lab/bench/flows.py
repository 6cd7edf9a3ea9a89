"""Flow-survival drills: a long download across a director cable cut and its heal.

An established connection through a director lives in that director's
kernel: IPVS's connection table (the .202:80 web service, NAT) and the
connection tracker's NAT bindings (the internal network's gateway). The
directors share both (keepalived's lvs_sync_daemon, conntrackd); these
drills show whether a connection made through the master outlives its
cable cut (the standby takes over) and the heal (the master takes the VIPs
back), byte for byte.

Each drill writes a file of random bytes where it is served from, starts a
rate-limited download of it (long enough to span the cut, the hold and the
failback), cuts the VRRP leader's cables, heals them, and compares what
arrived with the file's SHA-256 taken where it was written. Reported: bytes
received of expected, whether the checksum matches, the downloader's error
if any, and the stall: the longest the reader waited for the next bytes.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from lab import node
from lab.bench import docroot
from lab.util import log

RATE = 400_000  # bytes/s the downloader reads at
# The cut comes this long after the download started: the kernel's IPVS sync
# daemon sends a new connection to the peers within 2 s (it flushes its
# buffer when full or every 2 s), and a connection made just before a
# takeover is lost with it.
LEAD_S = 4.0
DRILL_FILE = "flow-drill.bin"


@dataclass(frozen=True)
class Flow:
    server: str  # the node the file is written on
    directory: str  # where its web server serves it from
    client: str  # the node that downloads it
    url: str


def flows(cluster) -> dict[str, Flow]:
    """The IPVS path (the external client through the web VIP, kept by the
    IPVS sync) and the NAT gateway (a web server fetching from the lab's
    upstream node, kept by conntrackd)."""
    out = {}
    if cluster.ipvs:
        vs = next(v for v in cluster.model["ipvs"]["virtual_servers"] if v["protocol"] == "tcp" and v["role"] == "web")
        # The web servers' docroot, as the nas exports it.
        directory = docroot.export_dir(cluster.model)
        out["ipvs download across a cable cut"] = Flow(
            cluster.role("nas")[0], directory, "client", f"http://{vs['vip']}:{vs['port']}/{DRILL_FILE}"
        )
    upstream = cluster.model["dns"]["forwarders"][0]
    out["nat download across a cable cut"] = Flow(
        "upstream", "/var/www/html", cluster.role("web")[0], f"http://{upstream}/{DRILL_FILE}"
    )
    return out


DRILLS = ("ipvs download across a cable cut", "nat download across a cable cut")


def write_payload(flow: Flow, size: int) -> str:
    """Random bytes at the served path; their SHA-256 (taken there)."""
    path = f"{flow.directory}/{DRILL_FILE}"
    script = (
        f"head -c {size} /dev/urandom > {path}.tmp && chmod 644 {path}.tmp && mv {path}.tmp {path} && sha256sum {path}"
    )
    out = node.execute(flow.server, ["sh", "-c", script], timeout=60, check=True).stdout
    return out.split()[0]


# Runs in the downloading node (plain python3 is in every node): reads the
# URL at RATE bytes/s, hashing the body as it goes, for at most `limit`
# seconds in all and per read; prints one JSON line. Its
# socket's receive buffer is small, so the server can send only a fraction of
# a second ahead of the reader: the bytes cross the network while the drill
# runs, not all at once into the kernel's buffer before the cut.
DOWNLOADER = """
import hashlib, json, socket, sys, time, urllib.parse
url, rate, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
parts = urllib.parse.urlsplit(url)
digest, got, error, longest, started = hashlib.sha256(), 0, None, 0.0, time.monotonic()
asked = started
try:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    sock.settimeout(limit)
    sock.connect((parts.hostname, parts.port or 80))
    sock.sendall(f"GET {parts.path} HTTP/1.0\\r\\nHost: {parts.hostname}\\r\\n\\r\\n".encode())
    head = b""
    while b"\\r\\n\\r\\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the headers ended")
        head += chunk
    head, _, body = head.partition(b"\\r\\n\\r\\n")
    if b" 200 " not in head.split(b"\\r\\n", 1)[0]:
        raise ValueError(head.split(b"\\r\\n", 1)[0].decode(errors="replace"))
    while True:
        digest.update(body)
        got += len(body)
        time.sleep(max(0.0, got / rate - (time.monotonic() - started)))
        asked = time.monotonic()
        body = sock.recv(rate // 20)
        longest = max(longest, time.monotonic() - asked)
        if not body:
            break
        if time.monotonic() - started > limit:
            raise TimeoutError(f"still downloading after {limit:.0f} s")
except (OSError, ValueError) as exc:
    error = type(exc).__name__ + ": " + str(exc)[:200]
    longest = max(longest, time.monotonic() - asked)
print(json.dumps({"bytes": got, "seconds": round(time.monotonic() - started, 2), "error": error,
                  "sha256": digest.hexdigest(), "longest_wait_s": round(longest, 2)}))
"""


def parse_download(text: str) -> dict:
    """The downloader's JSON line, or what went wrong with it."""
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if not lines:
        return {"bytes": 0, "seconds": None, "error": text.strip()[-300:], "sha256": None}
    return json.loads(lines[-1])


def flow_drill(cluster, name: str, flow: Flow, hold: float) -> dict:
    """Download across the leader's cable cut and heal (see the module's doc)."""
    from lab.bench import holds_vip, wait_for, wait_serving

    leader = cluster.model["vrrp"]["leader"]
    size = int(RATE * (LEAD_S + hold + 10))  # the lead, the hold, the failback, and some
    wait_serving(cluster)
    expected = write_payload(flow, size)
    if flow.server == cluster.role("nas")[0] and docroot.wait_published(cluster, DRILL_FILE, expected) is None:
        raise RuntimeError(f"{DRILL_FILE} written on the nas did not reach every web server's docroot")
    limit = int(size / RATE * 3 + 30)  # a stalled or crawling download gives up after this
    argv = ["python3", "-c", DOWNLOADER, flow.url, str(RATE), str(limit)]
    result: list = []
    download = threading.Thread(target=lambda: result.append(node.execute(flow.client, argv, timeout=limit * 2)))
    download.start()
    try:
        time.sleep(LEAD_S)
        injected = time.time()
        cluster.cut(leader)
        time.sleep(hold)
        healed = time.time()
        cluster.cut(leader, up=True)
        back = wait_for(lambda: holds_vip(leader, cluster.vip), 60)
    finally:
        download.join(limit + 40)
        node.execute(flow.server, ["rm", "-f", f"{flow.directory}/{DRILL_FILE}"], timeout=30)
    got = parse_download(result[0].stdout + result[0].stderr if result else "no answer")
    row = {
        "name": name,
        "hold_s": hold,
        "expected_bytes": size,
        **got,
        "checksum_ok": got.get("sha256") == expected and got["bytes"] == size,
        # The longest the reader waited for bytes: about the takeover time
        # when the peer carried the connection on, the whole cut when the
        # connection only resumed once the healed director had it back.
        "stall_s": got.get("longest_wait_s"),
        "failback_s": None if back is None else round(healed - injected + back, 2),
        "injected_at": injected,
        "healed_at": healed,
    }
    log(
        "bench",
        f"drill {name}: {row['bytes']} of {size} bytes, checksum {'ok' if row['checksum_ok'] else 'WRONG'},"
        f" stall {row['stall_s']} s" + (f", error {row['error']}" if row.get("error") else ""),
    )
    return row
