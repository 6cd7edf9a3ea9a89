"""lab/bench/report.py on made-up results: the figures it derives, and the files it writes."""

from __future__ import annotations

from pathlib import Path

from lab.bench import report

PNG = b"\x89PNG\r\n\x1a\n"


def row(path: str, c: int, rps: float, page: str = "date") -> dict:
    return {
        "path": path,
        "page": page,
        "concurrency": c,
        "requests": 1000,
        "rps": rps,
        "p50_ms": 1000 * c / rps,
        "p99_ms": 3000 * c / rps,
        "failed": 0,
        "cpu": {"master": 80.0, "web1": 20.0},
    }


RESULTS = {
    "meta": {"quick": True, "started": "2026-11-27T18:00:00+00:00", "kernels": {"master": "uml", "dns1": "nspawn"}},
    "http": [
        row("direct", 1, 900),
        row("direct", 48, 9000),
        row("l4", 1, 800),
        row("l4", 48, 8100),  # 90% of direct: meets >= 80%
        row("l7", 1, 600),
        row("l7", 48, 4500),  # 50% of direct: misses >= 60%
        row("https", 48, 3000),  # no target
        row("direct", 48, 120, page="pi"),
        row("l7", 48, 118, page="pi"),
    ],
    "dns": [{"target": "vip", "clients": 4, "qps": 9100.0, "lost": 0, "avg_ms": 0.8}],
    "drills": [
        {
            "name": "director cable cut",
            "outage_s": 0.4,
            "failed": 40,
            "failed_retry_once": 0,
            "http": {"errors": {"timeout": 38, "ConnectionRefusedError": 2}},
            "l7": {"errors": {"HTTP 503": 2}},
            "l7_outage_s": 0.3,
            "l7_failed": 2,
            "dns_outage_s": 0.5,
            "recovery_s": 3.1,
        },
        {
            "name": "web node cut",
            "outage_s": 0.0,
            "failed": 0,
            "failed_retry_once": 0,
            "recovery_s": None,
            "detected_s": {"web-https-l4": 1.29, "web-http-l7": 0.44, "IPVS 192.168.1.202:80/tcp": 6.4},
            "detection_s": 0.44,
        },
    ],
}


def test_series_sorts_by_concurrency_per_path():
    rows = [row("l4", 48, 8000), row("l4", 1, 700), row("direct", 12, 5000)]
    assert report.series(rows, "date", "rps") == {"l4": [(1, 700.0), (48, 8000.0)], "direct": [(12, 5000.0)]}


def test_balancer_cost_against_the_issue_targets():
    cost = report.balancer_cost(RESULTS["http"])
    assert cost["l4"] == {"concurrency": 48, "share": 0.9, "target": 0.8, "meets": True}
    assert cost["l7"]["share"] == 0.5 and cost["l7"]["meets"] is False
    assert cost["https"]["target"] is None and cost["https"]["meets"] is None
    assert "direct" not in cost


def test_balancer_cost_needs_a_direct_point_at_the_same_concurrency():
    assert report.balancer_cost([row("direct", 1, 900), row("l4", 48, 8000)]) == {}


def test_render_writes_valid_pngs_and_a_report(tmp_path: Path):
    written = report.render(RESULTS, tmp_path)
    pngs = [p for p in written if p.suffix == ".png"]
    # rps and p99 for each of two pages, and the drills.
    assert sorted(p.name for p in pngs) == [
        "drills-outage.png",
        "http-date-p99-ms.png",
        "http-date-rps.png",
        "http-pi-p99-ms.png",
        "http-pi-rps.png",
    ]
    for png in pngs:
        assert png.read_bytes().startswith(PNG) and png.stat().st_size > 5000
    text = (tmp_path / "report.md").read_text()
    assert "| HAProxy layer 4 (:80) | 48 | 90% | >= 80% | yes |" in text
    assert "| HAProxy layer 7 (:8000) | 48 | 50% | >= 60% | no |" in text
    assert (
        "| director cable cut | 0.40 | 40 | 0 | 0.30 | 2 | 0.50 | 3.1"
        " | L4: timeout 38, ConnectionRefusedError 2; L7: HTTP 503 2 |" in text
    )
    assert "| web node cut | 0.00 | 0 | 0 | - | - | - | not within the wait | - |" in text
    assert (
        "web node cut: the director took the server out of web-http-l7 0.44 s, web-https-l4 1.29 s,"
        " IPVS 192.168.1.202:80/tcp 6.40 s." in text
    )
    assert "Quick run started 2026-11-27T18:00:00+00:00; user-mode kernel nodes: master." in text
    # The seed's findings beside this run's (only the date page has a layer 4 row here).
    assert "- date page, seed: HAProxy saturated at c = 24" in text and "master 80%" in text
    assert "![http-date-rps.png](http-date-rps.png)" in text


def test_the_stats_screenshot_is_linked_when_taken(tmp_path: Path):
    taken = {**RESULTS, "meta": {**RESULTS["meta"], "stats_screenshot": "haproxy-stats.png"}}
    assert "![haproxy-stats.png](haproxy-stats.png)" in report.markdown(taken, [])
    assert "haproxy-stats" not in report.markdown(RESULTS, [])


def test_flow_survival_rows_show_bytes_checksum_and_stall():
    flows = [
        {
            "name": "ipvs download across a cable cut",
            "hold_s": 3,
            "bytes": 6800000,
            "expected_bytes": 6800000,
            "checksum_ok": True,
            "stall_s": 0.41,
            "error": None,
        },
        {
            "name": "nat download across a cable cut",
            "hold_s": 3,
            "bytes": 1200000,
            "expected_bytes": 6800000,
            "checksum_ok": False,
            "stall_s": None,
            "error": "ConnectionResetError: [Errno 104] Connection reset by peer",
        },
    ]
    text = report.markdown({**RESULTS, "flows": flows}, [])
    assert "| ipvs download across a cable cut | 3 | 6800000 of 6800000 | ok | 0.41 | - |" in text
    assert "| nat download across a cable cut | 3 | 1200000 of 6800000 | WRONG | - | ConnectionResetError" in text
    assert "Flow survival" not in report.markdown(RESULTS, [])


def test_failover_targets_from_the_drills():
    drills = [
        {
            "name": "director cable cut",
            "failed_retry_once": 0,
            "outage_s": 0.33,
            "l7": {"failed_retry_once": 1},
            "dns": {"episodes": [[100.0, 100.29], [112.2, 113.7]]},
            "after_heal_failed_retry_once": {"http": 0, "l7": 0, "dns": 0},
        },
        {
            "name": "web node cut",
            "outage_s": 1.1,
            "failed_retry_once": 1,
            "l7_failed": 22,
            "detection_s": 1.05,
            "detection_every_s": 1.4,
        },
        {"name": "dns node cut", "detection_every_s": 0.47, "dns": {"failed_retry_once": 2}},
    ]
    got = {t["target"]: (t["value"], t["meets"]) for t in report.failover_targets(drills)}
    assert got == {
        "director cable cut: VIP takeover <= 0.5 s": ("0.30 s", True),
        "director cable cut: 0 failed HTTP requests (:80, :8000), client retrying once": ("1", False),
        "director cable cut, failback: 0 failed HTTP requests after the heal, retrying once": ("0", True),
        "web node cut: 0 errors on :8000 (layer 7)": ("22", False),
        "web node cut: the probed backends take it out <= 1 s": ("1.05 s", False),
        "web node cut: every path (HTTPS, IPVS too) takes it out <= 1 s": ("1.40 s", False),
        "dns node cut: IPVS (UDP and TCP 53) takes it out <= 1 s": ("0.47 s", True),
        "dns node cut: 0 DNS queries lost, client retrying once": ("2", False),
    }
    # Not taken out before the heal: reported, not met.
    drills[1].update(l7_failed=0, detection_s=None)
    got = {t["target"]: (t["value"], t["meets"]) for t in report.failover_targets(drills)}
    assert got["web node cut: the probed backends take it out <= 1 s"] == ("not before the heal", False)
    assert got["web node cut: 0 errors on :8000 (layer 7)"] == ("0", True)
    assert report.failover_targets([{"name": "control", "outage_s": 0}]) == []


def test_the_nas_drills_each_get_their_section():
    outage = {"failed_retry_once": 0}
    cut = {
        "name": "nas cut",
        "hold_s": 120,
        "probes": 17913,
        "stopped": "apache2 on web2",
        "back_in_rotation_s": 163.6,
        "back_after_heal_s": 53.6,
        "published_s": 5.0,
        **{kind: outage for kind in ("http", "l7", "dns")},
    }
    disk = {
        "name": "nas disk loss",
        "files": 6,
        "restored_files": 6,
        "differing": [],
        "rebuilt_s": 123.5,
        "probes": 13535,
        "published_s": 6.06,
        "http": outage,
        "l7": {"failed_retry_once": 2},
        "dns": outage,
    }
    text = report.markdown({**RESULTS, "nas": [cut, disk]}, [])
    assert "| 120 | 17913 | 0 / 0 / 0 | apache2 on web2 | 163.6 | 53.6 | 5.0 |" in text
    assert "| 6 | 6 | 0 | 123.5 | 13535 | 0 / 2 / 0 | 6.1 |" in text
    assert "The nas's disk lost" in text
    assert "The nas's disk lost" not in report.markdown({**RESULTS, "nas": [cut]}, [])
