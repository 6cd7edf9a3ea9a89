"""What Prometheus recorded around each drill, for the report's plots.

After the drills, the bench asks the monitoring server's query API
(``/api/v1/query_range``, on that node's loopback: the bench runs ``curl``
inside the node, as an operator would over SSH) for a few series over each
drill's window: from ``LEAD_S`` before the fault to ``TAIL_S`` after the
heal. The series are the cluster's own numbers (the keepalived textfile,
HAProxy's and the node exporter's IPVS metrics), at Prometheus's scrape
interval: a fault shorter than one interval may fall between two samples,
which the plots show as it is.

A drill row gains ``history``: ``{"step_s", "start", "end", "panels": [{"title",
"unit", "series": [{"label", "points": [[t, value], ...]}]}]}`` or
``{"error": ...}`` when the query API did not answer (the nas cut drill's
own window has a hole: Prometheus could scrape nobody meanwhile).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import yaml

from lab import node
from lab.topology import REPO
from lab.util import log

LEAD_S = 30
TAIL_S = 30


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    # (PromQL, the series' label: a format string over the result's labels)
    queries: tuple[tuple[str, str], ...]


VRRP_MASTER = 'max by (node) (keepalived_vrrp_master{type="instance"})'
SERVERS_UP = 'sum by (node) (haproxy_server_status{state="UP"})'
IPVS_IN = "count by (node) (node_ipvs_backend_weight > 0)"
CONNECTIONS = "sum by (node) (irate(haproxy_frontend_connections_total[1m]))"
CONNECTION_ERRORS = "sum by (node) (irate(haproxy_backend_connection_errors_total[1m]))"
ANSWERS_5XX = 'sum by (node) (irate(haproxy_backend_http_responses_total{code="5xx"}[1m]))'
PANELS = (
    Panel("VIP holder", "1: MASTER", ((VRRP_MASTER, "{node}"),)),
    Panel("HAProxy servers UP", "server entries", ((SERVERS_UP, "{node}"),)),
    Panel("IPVS real servers in service", "weight > 0", ((IPVS_IN, "{node}"),)),
    Panel("Connections through HAProxy", "per second", ((CONNECTIONS, "{node}"),)),
    Panel("Errors", "per second", ((CONNECTION_ERRORS, "{node} connection errors"), (ANSWERS_5XX, "{node} 5xx"))),
)


def prometheus_defaults() -> dict:
    """The prometheus formula's defaults (salt/prometheus/defaults.yaml): its port and scrape interval."""
    return yaml.safe_load((REPO / "salt" / "prometheus" / "defaults.yaml").read_text())["prometheus"]


def duration_s(text: str) -> float:
    """A Prometheus duration of one unit (``15s``, ``1m``) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * units[suffix]
    raise ValueError(f"not a Prometheus duration: {text!r}")


def parse_matrix(answer: str, label: str) -> list[dict]:
    """A query_range answer -> [{"label", "points": [[t, value], ...]}], each
    series named by formatting ``label`` with its labels (a missing one reads
    as "?"); an answer that is not a successful matrix raises ValueError with
    Prometheus's own error."""
    data = json.loads(answer)
    if data.get("status") != "success":
        raise ValueError(f"Prometheus: {data.get('errorType', '?')}: {data.get('error', answer[:200])}")
    if data["data"]["resultType"] != "matrix":
        raise ValueError(f"Prometheus answered a {data['data']['resultType']}, not a matrix")

    class Labels(dict):
        def __missing__(self, key: str) -> str:
            return "?"

    series = [
        {
            "label": label.format_map(Labels(item["metric"])),
            "points": [[float(t), float(v)] for t, v in item["values"]],
        }
        for item in data["data"]["result"]
    ]
    return sorted(series, key=lambda s: s["label"])


def query_range_argv(expr: str, start: float, end: float, step: float, port: int) -> list[str]:
    """curl asking the query API on the node's loopback (every value as its own argument)."""
    argv = ["curl", "-s", "-m", "20", "-G", f"http://127.0.0.1:{port}/api/v1/query_range"]
    for key, value in (("query", expr), ("start", f"{start:.3f}"), ("end", f"{end:.3f}"), ("step", f"{step:g}")):
        argv += ["--data-urlencode", f"{key}={value}"]
    return argv


def window(row: dict) -> tuple[float, float] | None:
    """A drill row's window (fault minus LEAD_S to heal plus TAIL_S), None
    for a row without the fault's time."""
    if "injected_at" not in row:
        return None
    healed = row.get("healed_at") or row["injected_at"]
    return row["injected_at"] - LEAD_S, healed + (row.get("recovery_s") or 0) + TAIL_S


def collect(
    start: float, end: float, ask: Callable[[list[str]], str], step: float, port: int, panels: Iterable[Panel] = PANELS
) -> dict:
    """Every panel's series over [start, end] (to the millisecond, as asked);
    ``ask`` runs curl's argv where Prometheus listens."""
    start, end = round(start, 3), round(end, 3)
    out = []
    for panel in panels:
        series = []
        for expr, label in panel.queries:
            series += parse_matrix(ask(query_range_argv(expr, start, end, step, port)), label)
        out.append({"title": panel.title, "unit": panel.unit, "series": series})
    return {"step_s": step, "start": start, "end": end, "panels": out}


def add_history(rows: Iterable[dict], server: str) -> None:
    """Each drill row's ``history`` from the monitoring node ``server``, once
    Prometheus has scraped past the last window's end."""
    timed = [(row, span) for row in rows if (span := window(row))]
    if not timed:
        return
    defaults = prometheus_defaults()
    step, port = duration_s(defaults["interval"]), int(defaults["port"])
    last = max(end for _, (_, end) in timed)
    time.sleep(max(0.0, min(last + step - time.time(), TAIL_S + step)))

    def ask(argv: list[str]) -> str:
        proc = node.execute(server, argv, timeout=30)
        if proc.returncode != 0:
            raise ValueError(f"curl exit {proc.returncode}: {proc.stderr.strip()[-200:]}")
        return proc.stdout

    for row, (start, end) in timed:
        try:
            row["history"] = collect(start, min(end, time.time()), ask, step, port)
        except (ValueError, RuntimeError, OSError, subprocess.SubprocessError) as err:
            row["history"] = {"error": str(err)}
            log("bench", f"no history for drill {row['name']}: {err}")
