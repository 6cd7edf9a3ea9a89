"""`python -m lab bench --quick` on the shared lab: the harness runs end to end,
its figures are there, and its drills tell an injected outage from none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import bench
from lab.bench import report
from lab.topology import load
from labtools import in_node, lab

pytestmark = pytest.mark.usefixtures("running_lab")
PNG = b"\x89PNG\r\n\x1a\n"


def stats_rows_up(png: Path) -> int:
    """Rows of the screenshot painted in the stats page's colour for a server
    UP (#c0ffc0): a login error page or a blank one has none."""
    import matplotlib.image

    pixels = (matplotlib.image.imread(png)[:, :, :3] * 255).round()
    green = (abs(pixels[:, :, 0] - 0xC0) <= 2) & (pixels[:, :, 1] >= 0xFD) & (abs(pixels[:, :, 2] - 0xC0) <= 2)
    rows = green.sum(axis=1) > pixels.shape[1] // 4
    # Count bands (a table row is several pixel rows high).
    return int(rows[0]) + int(((rows[1:]) & ~rows[:-1]).sum())


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("bench")
    lab("bench", "--quick", "--out", str(out), timeout=600)
    return out, json.loads((out / "results.json").read_text())


def test_quick_run_measures_every_path_page_and_concurrency(quick):
    _, results = quick
    plan = bench.QUICK
    paths = {"direct", "l4", "l7", "https"} | ({"ipvs"} if results["meta"]["ipvs"] else set())
    points = {(r["path"], r["page"], r["concurrency"]) for r in results["http"]}
    assert points == {(p, page, c) for p in paths for page in bench.PAGES for c in plan.concurrency}
    for row in results["http"]:
        # Light load on a healthy cluster: no request fails, give or take a stray one.
        assert row["rps"] is not None and row["rps"] > 0, row  # None: an ab run aborted
        assert row["failed"] <= row["requests"] // 100, row
        # Every planned request, or as many as the point's time limit allowed
        # (ab -t: a slow machine's HTTPS handshakes can take a quarter second).
        assert row["p50_ms"] is not None, row
        assert row["requests"] >= plan.requests[row["page"]] or row["seconds"] >= plan.time_limit - 0.5, row
        assert set(row["cpu"]) == {"master", "standby", "web1", "web2", "web3"}, row
    # The director holding the VIP does the balancing. A quick point lasts a
    # fraction of a second, near the CPU accounting's tick: check the sum.
    assert sum(r["cpu"]["master"] for r in results["http"] if r["path"] != "direct") > 0
    assert {(r["target"], r["clients"]) for r in results["dns"]} == {
        (t, c) for t in ("vip", "direct") for c in plan.dns_clients
    }
    assert all(r["qps"] > 0 and r["completed"] > 0 for r in results["dns"])


def test_drills_see_an_injected_outage_and_none_without_one(quick):
    _, results = quick
    drills = {d["name"]: d for d in results["drills"]}
    assert set(drills) == set(bench.QUICK.drills) - set(bench.flows.DRILLS)
    control = drills["control"]
    assert control["probes"] > 300 and control["failed"] == control["l7_failed"] == control["dns_failed"] == 0, control
    # The cut web server was taken out by every balancer entry the probes go
    # through (the director's own log says so), and no DNS query was lost.
    web = drills["web node cut"]
    assert web["detection_s"] is not None and web["dns_failed"] == 0, web
    # DNS through IPVS has no retry: queries sent before the VIP moves are lost.
    director = drills["director cable cut"]
    assert director["outage_s"] > 0 and director["dns_failed"] > 0, director
    assert web["recovery_s"] is not None and director["recovery_s"] is not None


def test_failover_meets_its_targets_with_the_defaults_right_after_the_sweeps(quick):
    """The quick plan's sweeps, then the drills with the topology's defaults:
    the standby takes the VIPs within 0.5 s of the cut (the first DNS outage),
    a client retrying once loses no request, neither at the cut nor when the
    healed director takes the VIPs back, and a cut web server leaves every
    balancer path within 1 s with no layer 7 error."""
    _, results = quick
    targets = report.failover_targets(results["drills"])
    for row in targets:
        print(f"{row['target']}: {row['value']} ({'met' if row['meets'] else 'NOT met'})")
    # Every row, the paths the probes do not use included (HTTPS with no
    # traffic learns of a cut server from its checks alone: docs/operations.md).
    assert len(targets) == 8 and all(row["meets"] for row in targets), targets
    director = {d["name"]: d for d in results["drills"]}["director cable cut"]
    cut, healed = director["injected_at"], director["healed_at"]
    episodes = director["http"]["episodes"] + director["l7"]["episodes"]
    at_heal = [[round(s - cut, 2), round(e - cut, 2)] for s, e in episodes if e >= healed]
    print(f"director cable cut: healed at {healed - cut:.2f} s, outages from then on {at_heal} (s after the cut)")
    assert director["l7"]["failed_retry_once"] == 0, director["l7"]


def ipvs_connections_shared() -> bool:
    """Whether the leader runs the kernel's IPVS sync threads, both ways (the
    topology's vrrp.ipvs_sync), as `ipvsadm` lists them."""
    leader = load()[1]["vrrp"]["leader"]
    out = in_node(leader, "ipvsadm", "-L", "--daemon").stdout
    return "master sync daemon" in out and "backup sync daemon" in out


def test_established_flows_survive_the_cable_cut_and_the_failback(quick):
    """A download through the NAT gateway (a web server from the lab's
    upstream node) across the leader's cable cut and its heal: every byte
    arrives, the SHA-256 matches the one taken where the file was written,
    and the longest stall is shorter than the cut: the standby carried the
    connection on (conntrackd) instead of it waiting for the healed
    director. The same for a download through IPVS (.202:80, from the
    external client) when the directors share IPVS connections (the
    default); when they do not (vrrp.ipvs_sync off), that one is not
    carried by the standby: it fails, or waits out the cut."""
    _, results = quick
    flows = {f["name"]: f for f in results["flows"]}
    expected = set(bench.flows.DRILLS) if results["meta"]["ipvs"] else {"nat download across a cable cut"}
    assert set(flows) == expected
    for name, row in flows.items():
        print(
            f"{name}: {row['bytes']} of {row['expected_bytes']} bytes, checksum ok {row['checksum_ok']},"
            f" longest stall {row['stall_s']} s, cut {row['hold_s']} s, failback after {row['failback_s']} s"
        )
    shared = {"nat download across a cable cut"}
    model = load()[1]
    ipvs_sync = bool(model["vrrp"]["directors"][model["vrrp"]["leader"]]["state_sync"]["ipvs_port"])
    if results["meta"]["ipvs"]:
        # The topology says whether IPVS connections are shared; the leader
        # runs the sync threads exactly then.
        assert ipvs_connections_shared() == ipvs_sync
        if ipvs_sync:
            shared.add("ipvs download across a cable cut")
    for name, row in flows.items():
        if name in shared:
            assert row["error"] is None and row["checksum_ok"], row
            assert row["stall_s"] < row["hold_s"], row
        else:
            assert row["error"] is not None or row["stall_s"] >= row["hold_s"], row


def test_quick_run_writes_plots_and_a_report(quick):
    out, _ = quick
    pngs = sorted(p for p in out.glob("*.png") if not p.name.startswith(report.HISTORY_PREFIX))
    assert [p.name for p in pngs] == [
        "drills-outage.png",
        "haproxy-stats.png",
        "http-date-p99-ms.png",
        "http-date-rps.png",
        "http-pi-p99-ms.png",
        "http-pi-rps.png",
    ]
    assert all(p.read_bytes().startswith(PNG) for p in pngs)
    assert stats_rows_up(out / "haproxy-stats.png") >= 9  # 3 backends x 3 servers, UP
    text = (out / "report.md").read_text()
    for heading in (
        "## Balancer cost (date page)",
        "## DNS (dnsperf)",
        "## Failure drills",
        "## Compared with the seed",
    ):
        assert heading in text


def test_each_drill_comes_with_what_prometheus_recorded_around_it(quick):
    """Every drill's window (before the fault to after the heal) asked of
    the monitoring server's query API: the directors' VRRP state and HAProxy
    servers, sampled inside the window, and a plot of them in the report."""
    out, results = quick
    directors = set(load()[1]["roles"]["director"])
    timed = [row for row in report.drill_rows(results) if "injected_at" in row]
    assert {row["name"] for row in timed} >= {"web node cut", "director cable cut"}
    for row in timed:
        history = row["history"]
        assert "error" not in history, (row["name"], history)
        panels = {panel["title"]: panel["series"] for panel in history["panels"]}
        for title in ("VIP holder", "HAProxy servers UP"):
            assert {s["label"] for s in panels[title]} == directors, (row["name"], title, panels[title])
        times = [t for series in panels["VIP holder"] for t, _ in series["points"]]
        assert history["start"] <= min(times) and max(times) <= history["end"], row["name"]
        assert history["start"] < row["injected_at"] < history["end"], row["name"]
        assert (out / report.history_file(row)).read_bytes().startswith(PNG), row["name"]
    text = (out / "report.md").read_text()
    assert "## Around each drill, as Prometheus recorded it" in text
