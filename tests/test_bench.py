"""lab/bench's pure parts: parsers on real ab and dnsperf output (captured
on the lab), how outages are told from probe records, and what it derives
from the topology."""

from __future__ import annotations

import pytest

from conftest import REPO
from lab import bench
from lab.topology import load

FIXTURES = REPO / "tests" / "fixtures"


def test_ab_report_of_a_clean_run():
    got = bench.parse_ab((FIXTURES / "ab_date.txt").read_text())
    assert got == {
        "requests": 200,
        "rps": 143.11,
        "p50_ms": 24.0,
        "p99_ms": 109.0,
        "failed": 0,
        "seconds": 1.397,
    }


def test_ab_over_https_with_variable_length_pages():
    got = bench.parse_ab((FIXTURES / "ab_pi_https.txt").read_text())
    assert got["requests"] == 40 and got["rps"] == 29.72 and (got["p50_ms"], got["p99_ms"]) == (55.0, 193.0)


def test_ab_counts_non_2xx_answers_as_failed():
    # pi.php?n=0 answers 400: ab itself reports "Failed requests: 0".
    assert bench.parse_ab((FIXTURES / "ab_non2xx.txt").read_text())["failed"] == 20


def test_ab_error_output_is_refused_with_its_text():
    with pytest.raises(ValueError, match="Connection refused"):
        bench.parse_ab("Benchmarking 192.168.1.200 (be patient)...apr_socket_recv: Connection refused (111)\n")


def test_dnsperf_statistics():
    got = bench.parse_dnsperf((FIXTURES / "dnsperf_vip.txt").read_text())
    assert got == {"sent": 1500, "completed": 1494, "lost": 6, "qps": 497.956844, "avg_ms": pytest.approx(1.749)}


def test_concurrent_runs_combine_into_one_point():
    parts = [
        {"requests": 100, "rps": 50.0, "p50_ms": 10.0, "p99_ms": 30.0, "failed": 1, "seconds": 2.0},
        {"requests": 300, "rps": 150.0, "p50_ms": 20.0, "p99_ms": 90.0, "failed": 0, "seconds": 2.5},
    ]
    assert bench.combine_ab(parts) == {
        "requests": 400,
        "rps": 200.0,
        "p50_ms": 17.5,
        "p99_ms": 90.0,
        "failed": 1,
        "seconds": 2.5,
    }


@pytest.mark.parametrize(
    ("total", "parts", "shares"),
    [(1, 3, [1]), (2, 3, [1, 1]), (6, 3, [2, 2, 2]), (48, 3, [16, 16, 16]), (7, 3, [3, 2, 2])],
)
def test_concurrency_is_split_among_the_servers(total, parts, shares):
    assert bench.split(total, parts) == shares


def probes(failures: dict[float, bool | None], kind: str = "http") -> list[list]:
    """Probe records every 10 ms over 0..3 s; ``failures`` maps a send time to its retry's outcome."""
    return [
        [kind, round(i * 0.01, 2), round(i * 0.01, 2) not in failures, None, failures.get(round(i * 0.01, 2))]
        for i in range(300)
    ]


def test_no_failed_probe_no_outage():
    assert bench.outages(probes({}), "http") == {
        "failed": 0,
        "failed_retry_once": 0,
        "errors": {},
        "late": 0,
        "outage_s": 0,
        "episodes": [],
    }


def test_a_late_answer_is_part_of_the_outage_but_not_an_error():
    records = [[*p, 2.5 if 1.0 <= p[1] < 1.2 else 0.003] for p in probes({})]
    got = bench.outages(records, "http")
    assert got["failed"] == 0 and got["late"] == 20
    assert got["episodes"] == [[1.0, 1.19]] and got["outage_s"] == pytest.approx(0.2)


def test_failures_close_together_are_one_outage_and_apart_are_two():
    failed = {round(0.5 + i * 0.01, 2): True for i in range(40)}  # 0.50 .. 0.89, each retry succeeds
    failed |= {round(2.0 + i * 0.01, 2): False for i in range(10)}  # 2.00 .. 2.09, retries fail too
    got = bench.outages(probes(failed), "http")
    assert got["failed"] == 50 and got["failed_retry_once"] == 10
    assert got["errors"] == {"unknown": 50}  # records from a probe that did not say why
    assert got["episodes"] == [[0.5, 0.89], [2.0, 2.09]]
    assert got["outage_s"] == pytest.approx(0.4 + 0.1)
    assert bench.outages(probes(failed), "dns")["failed"] == 0


def test_failed_probes_are_counted_by_what_went_wrong():
    records = [[*p, 0.003, None] for p in probes({})]
    for i, error in ((50, "timeout"), (51, "timeout"), (52, "ConnectionResetError"), (53, "HTTP 503")):
        records[i][2], records[i][4], records[i][6] = False, True, error
    got = bench.outages(records, "http")
    assert got["errors"] == {"timeout": 2, "ConnectionResetError": 1, "HTTP 503": 1}
    assert got["failed"] == 4 and got["failed_retry_once"] == 0


def test_paths_and_queries_come_from_the_topology():
    _, model, nodes = load()
    cluster = bench.Cluster(model, nodes, "salt", ipvs=True)
    urls = cluster.urls()
    assert urls == {
        "direct": ["http://10.0.100.2:80", "http://10.0.100.3:80", "http://10.0.100.4:80"],
        "l4": ["http://192.168.1.200:80"],
        "l7": ["http://192.168.1.200:8000"],
        "https": ["https://192.168.1.200:443"],
        "ipvs": ["http://192.168.1.202:80"],
    }
    assert cluster.l7_port == 8000
    assert "ipvs" not in bench.Cluster(model, nodes, "salt", ipvs=False).urls()
    queries = bench.dns_queries(model)
    assert "web1.lab.local A" in queries and "cluster1.lab.local CNAME" in queries
    assert "2.100.0.10.in-addr.arpa PTR" in queries and "www.example.org A" in queries


def test_an_aborted_ab_run_counts_what_completed():
    text = (
        "Benchmarking 10.0.100.3 (be patient)...apr_pollset_poll: The timeout specified has expired (70007)\n"
        "Total of 75 requests completed\n"
    )
    got = bench.parse_ab_run(text, planned=100)
    assert (got["requests"], got["failed"], got["rps"]) == (75, 25, None) and "timeout" in got["error"]
    clean = bench.parse_ab((FIXTURES / "ab_date.txt").read_text())
    point = bench.combine_ab([clean, got])
    assert point["requests"] == 275 and point["failed"] == 25 and point["rps"] is None and len(point["errors"]) == 1


# Captured on the lab: the master director's journal (haproxy and keepalived,
# `journalctl -o json`, three fields kept) during a web node cut drill (web2,
# 10.0.100.3, cut at WEB2_CUT) and a dns node cut drill (dns2, 10.0.100.6).
WEB2_CUT = 1795872573.849194
DNS2_CUT = 1795872690.5597105


def journal(name: str) -> list[str]:
    return (FIXTURES / name).read_text().splitlines()


def test_when_each_balancer_took_a_cut_web_server_out():
    got = bench.detections(journal("journal-web2-cut.jsonl"), "web2", "10.0.100.3", WEB2_CUT)
    # The two backends with traffic marked it down on failed connections
    # (observe layer4); the idle HTTPS one by its checks; IPVS by keepalived's.
    assert got == {
        "web-http-l4": 0.423,
        "web-http-l7": 0.453,
        "web-https-l4": 1.257,
        "IPVS 192.168.1.202:80/tcp": 6.175,
    }


def test_detections_name_only_the_cut_server_and_only_after_the_cut():
    lines = journal("journal-web2-cut.jsonl")
    # web1 served requests meanwhile: access log lines are not detections.
    assert bench.detections(lines, "web1", "10.0.100.2", WEB2_CUT) == {}
    # A window starting after HAProxy's lines sees only keepalived's.
    assert bench.detections(lines, "web2", "10.0.100.3", WEB2_CUT + 2) == {"IPVS 192.168.1.202:80/tcp": 4.175}


def test_when_ipvs_took_a_cut_dns_server_out():
    got = bench.detections(journal("journal-dns2-cut.jsonl"), "dns2", "10.0.100.6", DNS2_CUT)
    assert got == {"IPVS 192.168.1.200:53/udp": 6.657}


def test_the_probed_balancer_entries_come_from_the_topology():
    _, model, nodes = load()
    cluster = bench.Cluster(model, nodes, "salt", ipvs=True)
    assert cluster.probed("web2") == {"web-http-l4", "web-http-l7"}
    assert cluster.probed("dns2") == {"IPVS 192.168.1.200:53/udp"}
