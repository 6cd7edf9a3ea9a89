"""Benchmark of the self-healing loop on the lab (prints figures; not a test).

    .venv/bin/python -m lab.bench.selfheal [--rounds 3] [--node web2|dns2|...]

Needs a running lab (`python -m lab up && python -m lab apply`). Each round
stops the node's service (apache2 on a web server, named on a DNS
server; web2 by default) and measures, from the stop command: its return, the
beacon's event (stamped by the minion; event latency), apache active again
(the reactor's action; event_to_action is the difference), and web2 back in
the layer 4 rotation. Bounded: a few rounds, 30 s each at most.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time

from lab import catalogue, events
from lab import node as nodes
from lab.topology import load


def run_in(name: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return nodes.execute(name, list(argv), timeout=timeout)


def profile(node: str, address: str, model: dict) -> tuple[str, str, str]:
    """The node's service (the catalogue's), a client-side probe through the
    external VIP, and what the probe prints while the node is in rotation."""
    role = model["nodes"][node]["roles"][0]
    vip = model["vips"]["external"][0]
    if role == "web":
        probe, expected = f"curl -s -m 2 http://{vip}/", f"{catalogue.server_prefix()}{address}<"
    else:
        probe, expected = f"dig +short +time=1 +tries=1 @{vip} CH TXT id.server", f'"{node}"'
    return catalogue.service_of(role), f"for i in 1 2 3; do {probe}; done", expected


def one_round(node: str, address: str, model: dict) -> dict[str, float]:
    service, probe, expected = profile(node, address, model)
    listener = events.listen(f"salt/beacon/{node}/cluster_watch/service", count=1, timeout=30)
    time.sleep(4)  # the listener is subscribed
    started, wall_start = time.monotonic(), time.time()
    run_in(node, "systemctl", "stop", service)
    figures: dict[str, float] = {"stop_returned": time.monotonic() - started}
    while time.monotonic() - started < 30:
        if "restarted" not in figures and run_in(node, "systemctl", "is-active", service).stdout.strip() == "active":
            figures["restarted"] = time.monotonic() - started
        if "restarted" in figures and expected in run_in("client", "sh", "-c", probe).stdout:
            figures["in_rotation"] = time.monotonic() - started
            break
        time.sleep(0.1)
    # When the service became active again, as the node's systemd recorded it
    # (the polling above only bounds it, each look costing a lab exec).
    show = ["systemctl", "show", "-P", "ActiveEnterTimestamp", "--timestamp=us+utc", service]
    active = run_in(node, *show).stdout.strip()
    if "restarted" in figures and active:
        at = datetime.datetime.strptime(active, "%a %Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=datetime.UTC)
        figures["restarted"] = at.timestamp() - wall_start
    listener.wait(timeout=40)
    event = next((data for _, data in events.parse(listener.stdout.read() if listener.stdout else "")), None)
    if event:
        # The minion stamps the event when its beacon fires (same host clock).
        fired = datetime.datetime.fromisoformat(event["_stamp"]).replace(tzinfo=datetime.UTC).timestamp()
        figures["event"] = fired - wall_start
        figures["event_state"] = event.get("state")
        if "restarted" in figures:
            # The reactor's reaction: event on the master -> apache active again.
            figures["event_to_action"] = figures["restarted"] - figures["event"]
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--node", default="web2", help="a web or DNS server (default web2)")
    args = parser.parse_args()
    model = load()[1]
    address = model["nodes"][args.node]["address"]
    rows = []
    for index in range(args.rounds):
        figures = one_round(args.node, address, model)
        rows.append(figures)
        print(
            f"round {index + 1}: "
            + ", ".join(f"{k}={v:.2f} s" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()),
            flush=True,
        )
        time.sleep(3)
    for key in ("stop_returned", "event", "restarted", "event_to_action", "in_rotation"):
        values = [r[key] for r in rows if key in r]
        if values:
            print(f"{key:12} min {min(values):.2f} s  max {max(values):.2f} s  ({len(values)}/{len(rows)} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
