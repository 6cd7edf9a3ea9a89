"""keepalived-realtime (salt/keepalived/files/keepalived-realtime.sh.jinja),
rendered from the formula's defaults with PID files of stand-in processes
(`sleep`, which never uses the CPU it is given): --check tells whether they
run as the formula wants, a run sets them so, and a missing process is an
error that names its PID file. Runs as root, as the suite does (CAP_SYS_NICE)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import jinja2
import pytest
import yaml

from conftest import REPO

TEMPLATE = REPO / "salt" / "keepalived" / "files" / "keepalived-realtime.sh.jinja"
REALTIME = yaml.safe_load((REPO / "salt/keepalived/defaults.yaml").read_text())["keepalived"]["realtime"]


@pytest.fixture
def stand_ins(tmp_path: Path) -> Iterator[tuple[Path, dict[str, subprocess.Popen]]]:
    """The rendered script, and a running stand-in per keepalived child."""
    procs = {name: subprocess.Popen(["sleep", "300"]) for name in ("vrrp", "checker")}
    pid_files = {name: tmp_path / f"{name}.pid" for name in procs}
    for name, proc in procs.items():
        pid_files[name].write_text(f"{proc.pid}\n")
    script = tmp_path / "keepalived-realtime"
    script.write_text(
        jinja2.Template(TEMPLATE.read_text()).render(
            realtime=REALTIME, pid_files={k: str(v) for k, v in pid_files.items()}
        )
    )
    script.chmod(0o755)
    try:
        yield script, procs
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


def scheduling(pid: int) -> tuple[str, str, str]:
    """Policy and priority as chrt shows them, and the RLIMIT_RTTIME line."""
    lines = subprocess.run(["chrt", "--pid", str(pid)], capture_output=True, text=True, check=True).stdout.splitlines()
    limit = next(line for line in Path(f"/proc/{pid}/limits").read_text().splitlines() if "realtime timeout" in line)
    return lines[0].rsplit(": ", 1)[1], lines[1].rsplit(": ", 1)[1], " ".join(limit.split()[3:5])


def test_a_run_makes_both_processes_realtime_and_check_then_passes(stand_ins):
    script, procs = stand_ins
    assert scheduling(procs["vrrp"].pid)[0] == "SCHED_OTHER"
    assert subprocess.run([script, "--check"], capture_output=True).returncode == 1
    assert subprocess.run([script], capture_output=True).returncode == 0
    limit = f"{REALTIME['rlimit_rttime'] // 2} {REALTIME['rlimit_rttime']}"
    for name, proc in procs.items():
        assert scheduling(proc.pid) == ("SCHED_RR|SCHED_RESET_ON_FORK", str(REALTIME[name]), limit)
    assert subprocess.run([script, "--check"], capture_output=True).returncode == 0


def test_a_process_set_back_to_normal_fails_the_check(stand_ins):
    script, procs = stand_ins
    subprocess.run([script], check=True)
    subprocess.run(["chrt", "--other", "--pid", "0", str(procs["checker"].pid)], check=True)
    assert subprocess.run([script, "--check"], capture_output=True).returncode == 1
    subprocess.run([script], check=True)
    assert scheduling(procs["checker"].pid)[:2] == ("SCHED_RR|SCHED_RESET_ON_FORK", str(REALTIME["checker"]))


def test_a_missing_process_is_an_error_naming_its_pid_file(stand_ins):
    script, procs = stand_ins
    procs["checker"].kill()
    procs["checker"].wait()
    result = subprocess.run([script, "--check"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "no running process in" in result.stderr and "checker.pid" in result.stderr, result.stderr
