"""Turn benchmark results (JSON) into plots and a Markdown report.

    .venv/bin/python -m lab.bench.report results.json OUT_DIR

The results are what the lab's benchmark records (issue 7); this module only
reads them, so it is tested on made-up results. Shape::

    {
      "meta": {"started": "...", "quick": true, ...},
      "http": [{"path": "direct", "page": "date", "concurrency": 1, "requests": 500,
                "rps": 812.0, "p50_ms": 1.1, "p99_ms": 3.0, "failed": 0,
                "cpu": {"master": 41.0, "web1": 12.0}}, ...],
      "dns": [{"target": "vip", "clients": 4, "qps": 9100.0, "lost": 0, "avg_ms": 0.8}, ...],
      "drills": [{"name": "director cable cut", "outage_s": 0.4, "failed": 12,
                  "failed_retry_once": 0, "recovery_s": 3.1}, ...]
    }

Paths: ``direct`` (the web servers themselves, no balancer), ``l4`` (HAProxy :80), ``l7``
(HAProxy :8000), ``https`` (HAProxy :443), ``ipvs`` (IPVS .202:80).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PATH_LABELS = {
    "direct": "direct to the web servers",
    "l4": "HAProxy layer 4 (:80)",
    "l7": "HAProxy layer 7 (:8000)",
    "https": "HAProxy HTTPS (:443)",
    "ipvs": "IPVS NAT (.202:80)",
}
# Issue 7's targets for the balancer's cost on the date page at the highest concurrency.
COST_TARGETS = {"l4": 0.80, "l7": 0.60}


def series(rows: Iterable[dict], page: str, metric: str) -> dict[str, list[tuple[int, float]]]:
    """path -> [(concurrency, value)] for one page, sorted by concurrency."""
    out: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if row["page"] == page and row.get(metric) is not None:
            out.setdefault(row["path"], []).append((row["concurrency"], float(row[metric])))
    return {path: sorted(points) for path, points in out.items()}


def balancer_cost(rows: Iterable[dict], page: str = "date") -> dict[str, Any]:
    """Each balanced path's throughput as a share of direct-to-backends, at the
    highest concurrency measured on both, with issue 7's target where it has one."""
    by_path = series(rows, page, "rps")
    direct = dict(by_path.get("direct", []))
    out: dict[str, Any] = {}
    for path, points in by_path.items():
        if path == "direct":
            continue
        common = [c for c, _ in points if c in direct and direct[c] > 0]
        if not common:
            continue
        top = max(common)
        share = dict(points)[top] / direct[top]
        target = COST_TARGETS.get(path)
        out[path] = {
            "concurrency": top,
            "share": share,
            "target": target,
            "meets": None if target is None else share >= target,
        }
    return out


def _row(target: str, value: str, meets: bool) -> dict:
    return {"target": target, "value": value, "meets": meets}


def _seconds(value: float | None) -> str:
    return "not before the heal" if value is None else f"{value:.2f} s"


def _within(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def failover_targets(drills: Iterable[dict]) -> list[dict]:
    """Issue 25's failover targets against the drills that measure them. The
    director cable cut: VIP takeover (its first DNS outage: IPVS answers as
    soon as the VIP has moved), HTTP and layer 7 probes that failed even
    when retried once, and those sent after the heal (the failback). A cut
    web server: layer 7 errors, detection by the HAProxy backends the probes
    go through, and by every balancer entry that sends to it (HTTPS and IPVS
    included). A cut DNS server: IPVS's detection and DNS queries lost even
    when retried once. Detections come from the director's log; None: one
    entry had not taken the server out before the heal."""
    by_name = {d["name"]: d for d in drills}
    out = []
    if director := by_name.get("director cable cut"):
        episodes = director.get("dns", {}).get("episodes") or []
        takeover = episodes[0][1] - episodes[0][0] + 0.01 if episodes else 0.0
        out.append(_row("director cable cut: VIP takeover <= 0.5 s", f"{takeover:.2f} s", takeover <= 0.5))
        retried = director["failed_retry_once"] + director.get("l7", {}).get("failed_retry_once", 0)
        out.append(
            _row(
                "director cable cut: 0 failed HTTP requests (:80, :8000), client retrying once",
                str(retried),
                retried == 0,
            )
        )
        if (after := director.get("after_heal_failed_retry_once")) is not None:
            failed = after["http"] + after["l7"]
            out.append(
                _row(
                    "director cable cut, failback: 0 failed HTTP requests after the heal, retrying once",
                    str(failed),
                    failed == 0,
                )
            )
    if web := by_name.get("web node cut"):
        if (l7 := web.get("l7_failed")) is not None:
            out.append(_row("web node cut: 0 errors on :8000 (layer 7)", str(l7), l7 == 0))
        if "detection_s" in web:
            value = web["detection_s"]
            out.append(
                _row("web node cut: the probed backends take it out <= 1 s", _seconds(value), _within(value, 1.0))
            )
        if "detection_every_s" in web:
            value = web["detection_every_s"]
            out.append(
                _row(
                    "web node cut: every path (HTTPS, IPVS too) takes it out <= 1 s",
                    _seconds(value),
                    _within(value, 1.0),
                )
            )
    if dns := by_name.get("dns node cut"):
        if "detection_every_s" in dns:
            value = dns["detection_every_s"]
            out.append(
                _row("dns node cut: IPVS (UDP and TCP 53) takes it out <= 1 s", _seconds(value), _within(value, 1.0))
            )
        lost = dns["dns"]["failed_retry_once"]
        out.append(_row("dns node cut: 0 DNS queries lost, client retrying once", str(lost), lost == 0))
    return out


def _num(value: float | None, spec: str) -> str:
    """A figure, or "-" where the run could not measure it (e.g. ab aborted)."""
    return "-" if value is None else format(value, spec)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(results: dict, images: list[str]) -> str:
    http = results.get("http", [])
    lines = ["# Cluster benchmark", ""]
    lines += _meta_lines(results.get("meta", {}))
    lines += _http_section(http)
    lines += _cost_section(http)
    lines += _targets_section(results.get("drills", []))
    lines += _dns_section(results.get("dns", []))
    lines += _drills_section(results.get("drills", []))
    lines += _flows_section(results.get("flows", []))
    lines += _nas_section([r for r in results.get("nas", []) if r["name"] != "nas disk loss"])
    lines += _disk_loss_section([r for r in results.get("nas", []) if r["name"] == "nas disk loss"])
    lines += _seed_comparison(http)
    lines += [f"![{name}]({name})" for name in images if not name.startswith(HISTORY_PREFIX)]
    lines += _history_section(results, [name for name in images if name.startswith(HISTORY_PREFIX)])
    shot = results.get("meta", {}).get("stats_screenshot")
    if shot:
        lines += ["", "## HAProxy statistics (master director, headless Chromium in the lab)", "", f"![{shot}]({shot})"]
    return "\n".join(lines) + "\n"


def _section(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """A titled table and a blank line; nothing when there are no rows."""
    return [f"## {title}", "", *_table(header, rows), ""] if rows else []


def _http_section(http: list[dict]) -> list[str]:
    header = ["path", "c", "requests", "req/s", "p50 ms", "p99 ms", "failed", "busiest CPU"]
    lines = []
    for page in sorted({r["page"] for r in http}):
        rows = sorted((r for r in http if r["page"] == page), key=lambda r: (r["path"], r["concurrency"]))
        lines += _section(
            f"HTTP, {page} page",
            header,
            [
                [
                    PATH_LABELS.get(r["path"], r["path"]),
                    str(r["concurrency"]),
                    str(r["requests"]),
                    _num(r["rps"], ".0f"),
                    _num(r["p50_ms"], ".1f"),
                    _num(r["p99_ms"], ".1f"),
                    str(r["failed"]),
                    ", ".join(f"{n} {p:.0f}%" for n, p in sorted(r.get("cpu", {}).items(), key=lambda x: -x[1])[:2]),
                ]
                for r in rows
            ],
        )
    return lines


def _cost_section(http: list[dict]) -> list[str]:
    return _section(
        "Balancer cost (date page)",
        ["path", "at c", "share of direct", "target", "met"],
        [
            [
                PATH_LABELS.get(path, path),
                str(v["concurrency"]),
                f"{v['share']:.0%}",
                "-" if v["target"] is None else f">= {v['target']:.0%}",
                "-" if v["meets"] is None else ("yes" if v["meets"] else "no"),
            ]
            for path, v in sorted(balancer_cost(http).items())
        ],
    )


def _targets_section(drills: list[dict]) -> list[str]:
    return _section(
        "Failover targets",
        ["target", "measured", "met"],
        [[t["target"], t["value"], "yes" if t["meets"] else "no"] for t in failover_targets(drills)],
    )


def _flows_section(flows: list[dict]) -> list[str]:
    """The flow-survival drills (lab/bench/flows.py): one download each
    across the leader's cable cut and heal."""
    return _section(
        "Flow survival (a download across a director cable cut and the failback)",
        ["drill", "cut s", "bytes", "checksum", "longest stall s", "error"],
        [
            [
                f["name"],
                f"{f['hold_s']:g}",
                f"{f['bytes']} of {f['expected_bytes']}",
                "ok" if f["checksum_ok"] else "WRONG",
                _num(f.get("stall_s"), ".2f"),
                f.get("error") or "-",
            ]
            for f in flows
        ],
    )


def _nas_section(rows: list[dict]) -> list[str]:
    """The nas drill (lab/bench/docroot.py): the site through a long nas cut,
    and a file published on the nas meanwhile."""
    return _section(
        "The site without its nas (a long nas cut; a file published during it)",
        [
            "cut s",
            "probes",
            "failed, retried once (http / l7 / dns)",
            "stopped during the cut",
            "back in rotation s",
            "of which after the heal, s",
            "published on every copy after the heal, s",
        ],
        [
            [
                f"{r['hold_s']:g}",
                str(r["probes"]),
                " / ".join(str(r[kind]["failed_retry_once"]) for kind in ("http", "l7", "dns")),
                r.get("stopped") or "-",
                _num(r.get("back_in_rotation_s"), ".1f"),
                _num(r.get("back_after_heal_s"), ".1f"),
                _num(r.get("published_s"), ".1f"),
            ]
            for r in rows
        ],
    )


def _disk_loss_section(rows: list[dict]) -> list[str]:
    """The disk loss drill (lab/bench/docroot.py): the nas's disk thrown away,
    the nas rebuilt through Salt, its docroot restored from a web server's copy."""
    return _section(
        "The nas's disk lost (rebuilt through Salt, the docroot restored from a copy)",
        [
            "files",
            "restored",
            "differing",
            "rebuilt in s",
            "probes",
            "failed, retried once (http / l7 / dns)",
            "published on every copy after, s",
        ],
        [
            [
                str(r["files"]),
                str(r["restored_files"]),
                str(len(r["differing"])),
                f"{r['rebuilt_s']:.1f}",
                str(r["probes"]),
                " / ".join(str(r[kind]["failed_retry_once"]) for kind in ("http", "l7", "dns")),
                _num(r.get("published_s"), ".1f"),
            ]
            for r in rows
        ],
    )


def _dns_section(dns: list[dict]) -> list[str]:
    return _section(
        "DNS (dnsperf)",
        ["target", "clients", "queries/s", "lost", "avg ms"],
        [
            [r["target"], str(r["clients"]), f"{r['qps']:.0f}", str(r["lost"]), f"{r['avg_ms']:.2f}"]
            for r in sorted(dns, key=lambda r: (r["target"], r["clients"]))
        ],
    )


def _drills_section(drills: list[dict]) -> list[str]:
    if not drills:
        return []
    lines = [
        "## Failure drills (probes through the VIP every 10 ms: HTTP :80 layer 4, :8000 layer 7, DNS)",
        "",
        "Failed: an error, or no answer within 5 s. The outage also counts answers later than 1 s.",
        "",
    ]
    header = ["drill", "HTTP outage s", "failed", "failed, retrying once", "L7 outage s", "L7 failed"]
    header += ["DNS outage s", "back to normal s", "what failed"]
    lines += _table(header, [_drill_row(d) for d in drills])
    lines.append("")
    for d in drills:
        if d.get("detected_s") is not None:
            taken = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(d["detected_s"].items(), key=lambda kv: kv[1]))
            lines += [f"{d['name']}: the director took the server out of {taken or 'nothing before the heal'}.", ""]
    return lines


def _drill_row(d: dict) -> list[str]:
    return [
        d["name"],
        f"{d['outage_s']:.2f}",
        str(d["failed"]),
        str(d["failed_retry_once"]),
        "-" if d.get("l7_outage_s") is None else f"{d['l7_outage_s']:.2f}",
        str(d.get("l7_failed", "-")),
        "-" if d.get("dns_outage_s") is None else f"{d['dns_outage_s']:.2f}",
        "not within the wait" if d.get("recovery_s") is None else f"{d['recovery_s']:.1f}",
        _failure_kinds(d),
    ]


def _failure_kinds(drill: dict) -> str:
    """The drill's failed probes by path and error, e.g. "L7: timeout 3, HTTP 503 1"."""
    parts = []
    for kind, label in (("http", "L4"), ("l7", "L7"), ("dns", "DNS")):
        errors = (drill.get(kind) or {}).get("errors") or {}
        if errors:
            parts.append(f"{label}: " + ", ".join(f"{e} {n}" for e, n in sorted(errors.items(), key=lambda i: -i[1])))
    return "; ".join(parts) or "-"


def _meta_lines(meta: dict) -> list[str]:
    if not meta:
        return []
    kind = "Quick run" if meta.get("quick") else "Full run"
    parts = [f"{kind} started {meta.get('started', '?')}"]
    if "duration_s" in meta:
        parts.append(f"took {meta['duration_s']:.0f} s")
    if "ipvs" in meta:
        parts.append("IPVS present" if meta["ipvs"] else "no IPVS")
    uml = sorted(n for n, k in meta.get("kernels", {}).items() if k == "uml")
    if uml:
        parts.append("user-mode kernel nodes: " + ", ".join(uml))
    return ["; ".join(parts) + ".", ""]


def _seed_comparison(http: list[dict]) -> list[str]:
    """The seed's chapter 4 findings next to this run's figures."""
    lines = []
    for page, finding in (
        ("date", "HAProxy saturated at c = 24, its director at 80% CPU"),
        ("pi", "the web servers bounded the throughput"),
    ):
        rows = [r for r in http if r["page"] == page and r["path"] == "l4" and r.get("cpu")]
        if not rows:
            continue
        top = max(rows, key=lambda r: r["concurrency"])
        busiest = sorted(top["cpu"].items(), key=lambda x: -x[1])[:3]
        peak = max(rows, key=lambda r: r["rps"])
        lines.append(
            f"- {page} page, seed: {finding}. Here (HAProxy layer 4): peak {peak['rps']:.0f} req/s at "
            f"c = {peak['concurrency']}; at c = {top['concurrency']} the busiest nodes were "
            + ", ".join(f"{n} {p:.0f}%" for n, p in busiest)
            + " (host CPU, % of one core)."
        )
    return ["## Compared with the seed", "", *lines, ""] if lines else []


def plots(results: dict, out: Path) -> list[Path]:
    """PNG plots: throughput and p99 latency vs concurrency per path (one pair
    per page), and the drills' outage lengths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    http = results.get("http", [])
    for page in sorted({r["page"] for r in http}):
        for metric, label in (("rps", "requests/s"), ("p99_ms", "p99 latency (ms)")):
            fig, ax = plt.subplots(figsize=(7, 4))
            for path, points in sorted(series(http, page, metric).items()):
                ax.plot([c for c, _ in points], [v for _, v in points], marker="o", label=PATH_LABELS.get(path, path))
            ax.set_xscale("log", base=2)
            levels = sorted({r["concurrency"] for r in http if r["page"] == page})
            ax.set_xticks(levels, [str(c) for c in levels])
            ax.minorticks_off()
            ax.set_xlabel("concurrent clients (ab -c)")
            ax.set_ylabel(label)
            ax.set_title(f"{page} page: {label}")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
            path = out / f"http-{page}-{metric.replace('_', '-')}.png"
            fig.tight_layout()
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    if results.get("drills"):
        drills = results["drills"]
        fig, ax = plt.subplots(figsize=(7, 0.5 + 0.5 * len(drills)))
        ax.barh([d["name"] for d in drills], [d["outage_s"] for d in drills])
        ax.set_xlabel("outage seen by the client (s)")
        ax.set_title("failure drills")
        ax.grid(True, axis="x", alpha=0.3)
        path = out / "drills-outage.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


HISTORY_PREFIX = "history-"


def drill_rows(results: dict) -> list[dict]:
    """Every drill's row: the probed drills, the nas drills, the flow drills."""
    return [*results.get("drills", []), *results.get("nas", []), *results.get("flows", [])]


def history_file(row: dict) -> str:
    """The PNG of a drill's history: history-<name with dashes>.png."""
    return HISTORY_PREFIX + "-".join(row["name"].replace("/", " ").split()) + ".png"


def _history_section(results: dict, images: list[str]) -> list[str]:
    rows = [r for r in drill_rows(results) if "history" in r]
    if not rows:
        return []
    step = next((r["history"]["step_s"] for r in rows if "step_s" in r["history"]), None)
    lines = ["", "## Around each drill, as Prometheus recorded it", ""]
    lines += [
        f"One sample every {step:g} s (the scrape interval): a fault shorter than that may fall between"
        " two samples. Shaded: from the fault to the heal; time 0 is the fault.",
        "",
    ]
    for row in rows:
        name = history_file(row)
        if name in images:
            lines += [f"### {row['name']}", "", f"![{name}]({name})", ""]
        elif "error" in row["history"]:
            lines += [f"### {row['name']}", "", f"No history: {row['history']['error']}", ""]
    return lines


def with_gaps(points: list[list[float]], step: float) -> tuple[list[float], list[float]]:
    """A series' times and values with a NaN one step after each sample that
    the next does not follow within one and a half steps: a line breaks
    where Prometheus had no sample (a node it could not scrape), instead of
    carrying the last value through."""
    xs: list[float] = []
    ys: list[float] = []
    for t, value in points:
        if xs and t - xs[-1] > 1.5 * step:
            xs.append(xs[-1] + step)
            ys.append(float("nan"))
        xs.append(t)
        ys.append(value)
    return xs, ys


def history_plots(results: dict, out: Path) -> list[Path]:
    """Per drill with a history: its panels stacked, seconds from the fault
    on the x axis, the fault shaded until the heal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for row in drill_rows(results):
        panels = row.get("history", {}).get("panels")
        if not panels:
            continue
        zero = row["injected_at"]
        fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.9 * len(panels)), sharex=True, squeeze=False)
        for ax, panel in zip(axes[:, 0], panels, strict=True):
            for series in panel["series"]:
                xs, ys = with_gaps(series["points"], row["history"]["step_s"])
                ax.step([x - zero for x in xs], ys, where="post", label=series["label"])
            ax.axvspan(0, (row.get("healed_at") or zero) - zero, color="tab:red", alpha=0.12)
            ax.set_title(panel["title"], fontsize="medium", loc="left")
            ax.set_ylabel(panel["unit"], fontsize="small")
            ax.grid(True, alpha=0.3)
            if panel["series"]:
                ax.legend(fontsize="x-small", loc="upper right")
            else:
                ax.text(0.5, 0.5, "no samples", transform=ax.transAxes, ha="center", va="center")
        axes[-1, 0].set_xlabel("seconds from the fault")
        fig.suptitle(f"{row['name']} (Prometheus, {row['history']['step_s']:g} s samples)")
        fig.tight_layout()
        path = out / history_file(row)
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def render(results: dict, out: Path) -> list[Path]:
    """Write the plots and report.md into ``out``; return every file written."""
    out.mkdir(parents=True, exist_ok=True)
    images = plots(results, out) + history_plots(results, out)
    report = out / "report.md"
    report.write_text(markdown(results, [p.name for p in images]))
    return [*images, report]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    results = json.loads(Path(argv[0]).read_text())
    for path in render(results, Path(argv[1])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
