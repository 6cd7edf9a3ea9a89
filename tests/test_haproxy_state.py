"""The HAProxy formula's reload keeps each server's runtime state: the save
script (run by the unit's ExecReload) and load-server-state-from-file, with
the host's real HAProxy on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO, load_module

SCRIPT = REPO / "salt" / "haproxy" / "files" / "save-server-state.py"
haproxy_runtime = load_module("_modules/haproxy_runtime.py", "haproxy_runtime")


def start(config: Path, sock: Path) -> subprocess.Popen:
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "no socket"
        time.sleep(0.05)
    return proc


def status(sock: Path, server: str) -> str:
    rows = haproxy_runtime.servers(str(sock))
    return next(row["status"] for row in rows if row["backend"] == "be" and row["server"] == server)


def test_a_drained_server_stays_drained_in_the_next_process(tmp_path: Path):
    sock, state = tmp_path / "admin.sock", tmp_path / "server-state"
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "global\n"
        f"    stats socket {sock} mode 600 level admin\n"
        f"    server-state-file {state}\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
        "    load-server-state-from-file global\n"
        "backend be\n"
        "    server web1 127.0.0.1:9\n"
        "    server web2 127.0.0.1:9\n"
    )
    first = start(config, sock)
    try:
        haproxy_runtime.set_state("be", "web2", "drain", str(sock))
        assert status(sock, "web2") == "DRAIN" and status(sock, "web1") != "DRAIN"
        subprocess.run([sys.executable, str(SCRIPT), str(sock), str(state)], check=True, timeout=30)
    finally:
        first.terminate()
        first.wait(timeout=10)
    sock.unlink(missing_ok=True)
    assert state.read_text().startswith("1\n# be_id")
    second = start(config, sock)
    try:
        assert status(sock, "web2") == "DRAIN" and status(sock, "web1") != "DRAIN"
    finally:
        second.terminate()
        second.wait(timeout=10)


def test_saving_without_a_running_haproxy_leaves_the_reload_to_go_on(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "none.sock"), str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0 and "reloading without it" in proc.stderr
    assert not (tmp_path / "state").exists()
