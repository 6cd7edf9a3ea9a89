#!/usr/bin/python3
"""Managed by Salt (keepalived formula).

Exit 0 when every HAProxy backend has at least one server UP, 1 otherwise.
keepalived lowers this director's priority while it fails, so a director that
cannot reach the web servers (e.g. just after its links come back, before its
health checks pass) does not take or keep the VIPs from a healthy peer.
"""

import csv
import socket
import sys

SOCKET = sys.argv[1] if len(sys.argv) > 1 else "/run/haproxy/admin.sock"


def main() -> int:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(SOCKET)
            sock.sendall(b"show stat -1 4 -1\n")  # servers only
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return 1
    rows = list(csv.reader(data.decode(errors="replace").lstrip("# ").splitlines()))
    if not rows:
        return 1
    header = rows[0]
    up: dict[str, bool] = {}
    for row in rows[1:]:
        if len(row) != len(header):
            continue
        record = dict(zip(header, row, strict=True))
        up[record["pxname"]] = up.get(record["pxname"], False) or record["status"].startswith("UP")
    return 0 if up and all(up.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
