"""keepalived's view of HAProxy (salt/keepalived/files/haproxy-watch.py):
the debounce on its own, then the watcher against the host's real HAProxy on
loopback, whose health frontend is the formula's (monitor-uri, 503 while a
backend has no server UP)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from conftest import REPO, load_module
from lab.bench import wait_for

SCRIPT = REPO / "salt" / "keepalived" / "files" / "haproxy-watch.py"
watch = load_module("salt/keepalived/files/haproxy-watch.py", "haproxy_watch")


def test_a_flag_changes_after_fall_failures_or_rise_successes_in_a_row():
    flag = watch.Debounced(fall=2, rise=3)
    assert flag.observe(False) is False  # the first observation counts at once
    assert [flag.observe(f) for f in (True, False, True, True)] == [False, False, False, True]
    assert [flag.observe(f) for f in (False, False, True, False, False, False)] == [True] * 5 + [False]


def test_nobody_listening_is_down_and_a_stranger_answer_degraded(tmp_path: Path):
    path = str(tmp_path / "health.sock")
    assert watch.ask(path, 0.5) == "down"  # no socket file
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        assert watch.ask(path, 0.5) == "down"  # bound, not listening: refused
        server.listen()
        assert watch.ask(path, 0.5) == "degraded"  # accepted, never answers


def wait_for_files(down: Path, degraded: Path, expected: tuple[str, str], timeout: float = 15) -> None:
    def seen() -> tuple[str | None, ...]:
        return tuple(p.read_text().strip() if p.exists() else None for p in (down, degraded))

    assert wait_for(lambda: seen() == expected, timeout) is not None, f"track files {seen()}, expected {expected}"


def test_the_track_files_follow_haproxy(tmp_path: Path):
    health = tmp_path / "health.sock"
    down, degraded = tmp_path / "track" / "down", tmp_path / "track" / "degraded"
    backend = socket.create_server(("127.0.0.1", 0))
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n"
        "    mode http\n"
        "    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
        "backend be\n"
        "    mode tcp\n"
        f"    server web1 127.0.0.1:{backend.getsockname()[1]} check inter 100ms fall 1 rise 1\n"
        "frontend health\n"
        f"    bind unix@{health} mode 660\n"
        "    monitor-uri /healthy\n"
        "    acl be-empty nbsrv(be) lt 1\n"
        "    monitor fail if be-empty\n"
    )
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stderr=subprocess.DEVNULL)
    argv = [sys.executable, str(SCRIPT), str(health), str(down), str(degraded)]
    watcher = subprocess.Popen([*argv, "--interval", "0.05", "--fall", "2", "--rise", "2"])
    try:
        wait_for_files(down, degraded, ("0", "0"))
        # keepalived (re)creating a track file as failing: set right again.
        degraded.write_text("1\n")
        wait_for_files(down, degraded, ("0", "0"))
        backend.close()  # the only server goes DOWN: HAProxy answers 503
        wait_for_files(down, degraded, ("0", "1"))
        haproxy.kill()  # its socket file stays behind, nobody listening
        haproxy.wait(timeout=10)
        assert health.exists()
        wait_for_files(down, degraded, ("1", "1"))
    finally:
        watcher.kill()
        haproxy.kill()
        watcher.wait(timeout=10)
        haproxy.wait(timeout=10)
