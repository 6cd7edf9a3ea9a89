"""Run commands in a user-mode-kernel node: a tiny exec agent and its client.

An nspawn node shares the host kernel, so the lab enters it with nsenter. A
User-Mode Linux node runs its own kernel: nsenter cannot reach into it. Each
such node gets one extra NIC on the lab's management bridge (never on a
cluster network), and this agent listens there. It accepts connections only
from the switch namespace's management address, runs one command per
connection and answers with its exit code and output. It is lab plumbing, not
part of the cluster: a real deployment has SSH for this.

Wire format: one JSON request line ``{"argv": [...], "stdin": "...",
"timeout": s}``; one JSON answer ``{"rc": n, "stdout": "...", "stderr": "..."}``.

The server half runs inside the node (``python3 agent.py serve ADDRESS PORT
PEER``, installed by the lab); the client half runs on the host, inside the
switch namespace (``python3 -m lab.agent call ADDRESS PORT`` with the request
on stdin).
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import subprocess
import sys
import time

PORT = 7070
# How long a client keeps trying to connect, and its pause between tries.
CONNECT_WITHIN_S = 10.0
CONNECT_PAUSE_S = 0.5
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}


def serve(address: str, port: int, peer: str) -> None:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            if self.client_address[0] != peer:
                return
            request = json.loads(self.rfile.readline())
            try:
                proc = subprocess.run(
                    request["argv"],
                    input=request.get("stdin", ""),
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=request.get("timeout", 120),
                    env=ENV,
                    cwd="/root",
                    check=False,
                )
                answer = {"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
            except FileNotFoundError as err:
                answer = {"rc": 127, "stdout": "", "stderr": f"{err}\n"}
            except subprocess.TimeoutExpired as err:
                answer = {"rc": 124, "stdout": "", "stderr": f"timed out after {err.timeout} s\n"}
            self.wfile.write(json.dumps(answer).encode() + b"\n")

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

        def server_bind(self) -> None:
            # The management address may not be configured yet when the agent starts.
            self.socket.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
            super().server_bind()

    with Server((address, port), Handler) as server:
        server.serve_forever()


def connect(address: str, port: int, within: float = CONNECT_WITHIN_S, attempt_timeout: float = 2) -> socket.socket:
    """A connection to the agent, tried again until ``within`` seconds have
    passed: a node whose kernel is starved of host CPU (user-mode kernels on
    a busy host) can leave a first SYN unanswered for seconds. Nothing has
    been sent before a connection stands, so trying again runs no command
    twice."""
    deadline = time.monotonic() + within
    while True:
        try:
            return socket.create_connection((address, port), timeout=attempt_timeout)
        except OSError:
            if time.monotonic() + CONNECT_PAUSE_S >= deadline:
                raise
            time.sleep(CONNECT_PAUSE_S)


def call(address: str, port: int, request: dict, within: float = CONNECT_WITHIN_S) -> dict:
    with connect(address, port, within) as conn:
        conn.settimeout(request.get("timeout", 120) + 10)
        conn.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise ConnectionError(f"agent at {address}:{port} closed the connection without an answer")
    return json.loads(data)


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(argv[1], int(argv[2]), argv[3])
        return 0
    if argv[:1] == ["call"]:
        try:
            answer = call(argv[1], int(argv[2]), json.loads(sys.stdin.read()))
        except (OSError, ConnectionError) as err:
            answer = {"rc": 255, "stdout": "", "stderr": f"agent unreachable: {err}\n", "unreachable": True}
        sys.stdout.write(json.dumps(answer))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main(sys.argv[1:]))
