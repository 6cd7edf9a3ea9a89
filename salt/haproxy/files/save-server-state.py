#!/usr/bin/python3
"""Managed by Salt (haproxy formula). systemd runs it before each HAProxy
reload (ExecReload): the servers' runtime state (drain, maint, weights,
health) goes to the server-state file that the new worker loads
(load-server-state-from-file), so a reload keeps a drained server drained.

    haproxy-save-server-state ADMIN_SOCKET STATE_FILE
"""

import os
import socket
import sys


def main() -> int:
    sock_path, state_file = sys.argv[1], sys.argv[2]
    chunks = []
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(sock_path)
            sock.sendall(b"show servers state\n")
            while data := sock.recv(65536):
                chunks.append(data)
    except OSError as exc:
        # A reload must not fail because the state could not be saved
        # (e.g. HAProxy is not running): it starts from the configuration.
        print(f"haproxy-save-server-state: {sock_path}: {exc}; reloading without it", file=sys.stderr)
        return 0
    tmp = f"{state_file}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(b"".join(chunks))
    os.replace(tmp, state_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
