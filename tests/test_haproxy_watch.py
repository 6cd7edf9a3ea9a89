"""keepalived's view of HAProxy (salt/keepalived/files/haproxy-watch.py):
the debounce on its own, then the watcher against the host's real HAProxy on
loopback, whose health frontend answers like the formula's (200 "ok", 503
"partial BACKEND", 503 "none")."""

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
    assert flag.observe(True, at_once=True) is True  # a failure already debounced upstream
    assert [flag.observe(False, at_once=True) for _ in range(3)] == [True, True, False]  # rising waits


def test_haproxy_answers_read_as_ok_none_or_degraded():
    assert watch.answer_of(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok") == "ok"
    assert watch.answer_of(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nnone") == "none"
    assert watch.answer_of(b"HTTP/1.1 503 Service Unavailable\r\n\r\npartial web-https-l4") == "partial"
    assert watch.answer_of(b"HTTP/1.1 503 Service Unavailable\r\n\r\n<html>busy</html>") == "degraded"
    assert watch.answer_of(b"HTTP/1.1 404 Not Found\r\n\r\nnone") == "degraded"
    assert watch.answer_of(b"") == "degraded"
    stopping = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 8\r\ncontent-type: text/plain\r\n"
    assert watch.answer_of(stopping + b"connection: close\r\n\r\nstopping") == "stopping"


def test_a_stopping_worker_changes_no_flag_and_none_lowers_the_priority_at_once():
    view = watch.View(fall=2, rise=4, settle=10)
    assert view.observe("ok", 3, 0.0) == {"down": False, "degraded": False, "isolated": False}
    assert view.observe("stopping", 3, 0.25) is None
    assert view.observe("ok", 3, 0.5) == {"down": False, "degraded": False, "isolated": False}
    # HAProxy's "none" is debounced by its checks already: degraded at once.
    assert view.observe("none", 3, 0.75) == {"down": False, "degraded": True, "isolated": False}
    assert view.observe("down", None, 1.0) == {"down": False, "degraded": True, "isolated": False}
    assert view.observe("down", None, 1.25) == {"down": True, "degraded": True, "isolated": False}


def test_reaching_no_server_counts_only_after_servers_were_reached_for_settle_seconds():
    reach = watch.Reach(settle=10)
    # A cluster being built: servers come and go, never 10 s in a row.
    assert [reach.lost(r, t) for r, t in ((False, 0), (True, 1), (True, 10), (False, 11))] == [False] * 4
    steps = ((True, 12), (True, 22), (False, 23), (True, 24))
    assert [reach.lost(r, t) for r, t in steps] == [False, False, True, False]
    assert reach.lost(False, 500) is True  # settled once, for good


def test_ipvs_real_servers_are_counted_from_the_kernel_table(tmp_path: Path):
    table = tmp_path / "ip_vs"
    header = "IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n"
    header += "  -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n"
    table.write_text(header + "UDP  C0A801C8:0035 rr\n  -> 0A006405:0035      Masq    1      0          688\n")
    assert watch.ipvs_real_servers(str(table)) == 1
    table.write_text(header + "UDP  C0A801C8:0035 rr\n")
    assert watch.ipvs_real_servers(str(table)) == 0
    assert watch.ipvs_real_servers(str(tmp_path / "absent")) is None


def test_nobody_listening_is_down_and_a_stranger_answer_degraded(tmp_path: Path):
    path = str(tmp_path / "health.sock")
    assert watch.ask(path, 0.5) == "down"  # no socket file
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        assert watch.ask(path, 0.5) == "down"  # bound, not listening: refused
        server.listen()
        assert watch.ask(path, 0.5) == "degraded"  # accepted, never answers


def wait_for_files(files: tuple[Path, ...], expected: tuple[str, ...], timeout: float = 15) -> None:
    def seen() -> tuple[str | None, ...]:
        return tuple(p.read_text().strip() if p.exists() else None for p in files)

    assert wait_for(lambda: seen() == expected, timeout) is not None, f"track files {seen()}, expected {expected}"


def test_the_track_files_follow_haproxy_and_ipvs(tmp_path: Path):
    health = tmp_path / "health.sock"
    files = tuple(tmp_path / "track" / name for name in ("down", "degraded", "isolated"))
    ipvs = tmp_path / "ip_vs"
    ipvs.write_text("TCP  C0A801CA:0050 rr\n  -> 0A006404:0050      Masq    1      0          0\n")
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
        "    acl health path /healthy\n"
        "    acl be-empty nbsrv(be) lt 1\n"
        '    http-request return status 503 content-type text/plain string "none" if health be-empty\n'
        '    http-request return status 200 content-type text/plain string "ok" if health\n'
    )
    haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stderr=subprocess.DEVNULL)
    argv = [sys.executable, str(SCRIPT), str(health), *map(str, files), "--ipvs-table", str(ipvs)]
    watcher = subprocess.Popen([*argv, "--settle", "0.3", "--interval", "0.05", "--fall", "2", "--rise", "2"])
    try:
        wait_for_files(files, ("0", "0", "0"))
        # keepalived (re)creating a track file as failing: set right again.
        files[1].write_text("1\n")
        wait_for_files(files, ("0", "0", "0"))
        backend.close()  # HAProxy's only server goes DOWN: "none", but IPVS still has one
        wait_for_files(files, ("0", "1", "0"))
        ipvs.write_text("TCP  C0A801CA:0050 rr\n")  # and IPVS none either: no server reached
        wait_for_files(files, ("0", "1", "1"))
        haproxy.kill()  # its socket file stays behind, nobody listening
        haproxy.wait(timeout=10)
        assert health.exists()
        wait_for_files(files, ("1", "1", "1"))
    finally:
        watcher.kill()
        haproxy.kill()
        watcher.wait(timeout=10)
        haproxy.wait(timeout=10)
