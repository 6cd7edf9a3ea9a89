"""
One command for "is my cluster healthy?", across both directors.

    salt-run cluster.health              # a table for people
    salt-run cluster.health --out=json   # the same, for programs

Reports who holds each VIP (an error when nobody does: outage; or more than
one director: split brain), each director's VRRP states, HAProxy's backend
servers as the VIP holder sees them, the VIP holder's IPVS table compared
with the topology (where the kernel has IPVS), and the packets each
director's host firewall dropped (an error when none is loaded). The report logic is a pure
function (``report``), tested on recorded answers.
"""

from __future__ import annotations

from typing import Any

import salt.client

__virtualname__ = "cluster"
__load__ = ["health"]


def __virtual__():
    return __virtualname__


def report(
    vips: list[str], held: dict, vrrp: dict, backends: dict, ipvs: dict | None = None, firewall: dict | None = None
) -> dict[str, Any]:
    """Health from the directors' answers: held {director: {vip: iface|None}},
    vrrp {director: {instance: {state}}}, backends {director: [server rows]},
    ipvs {director: ipvs.check's answer, or a string when IPVS is not there},
    firewall {director: firewall.dropped's answer, or a string when no
    firewall is loaded (an error: the director faces the Internet bare)}."""
    errors, warnings = [], []
    holders = {vip: sorted(d for d, h in held.items() if isinstance(h, dict) and h.get(vip)) for vip in vips}
    for vip, who in holders.items():
        if not who:
            errors.append(f"outage: no director holds {vip}")
        elif len(who) > 1:
            errors.append(f"split brain: {vip} is held by {', '.join(who)}")
    for director, answer in held.items():
        if not isinstance(answer, dict):
            errors.append(f"{director}: no answer ({answer})")
    active = sorted({d for who in holders.values() for d in who})
    servers = []
    for director in active:
        rows = backends.get(director)
        if not isinstance(rows, list):
            errors.append(f"{director}: HAProxy runtime socket did not answer ({rows})")
            continue
        for row in rows:
            servers.append({"director": director, **row})
            if not row["up"]:
                warnings.append(f"{row['backend']}/{row['server']} is {row['status']} on {director}")
        for backend in sorted({r["backend"] for r in rows}):
            if not any(r["up"] for r in rows if r["backend"] == backend):
                errors.append(f"{backend}: no server up on {director}")
    ipvs_report = {}
    for director in active:
        diff = (ipvs or {}).get(director)
        if not isinstance(diff, dict):
            ipvs_report[director] = f"not checked: {diff}" if diff else "not checked"
            continue
        ipvs_report[director] = "matches the topology" if diff["matches"] else "differs from the topology"
        errors += [f"IPVS on {director}: virtual service {k} is missing" for k in diff["missing_services"]]
        errors += [f"IPVS on {director}: unexpected virtual service {k}" for k in diff["extra_services"]]
        warnings += [
            f"IPVS on {director}: {d['service']} lacks {d['node']} ({d['real_server']}: failed its check or not added)"
            for d in diff["missing_real_servers"]
        ]
        warnings += [
            f"IPVS on {director}: {d['service']} has unexpected {d['real_server']}" for d in diff["extra_real_servers"]
        ]
        warnings += [
            f"IPVS on {director}: {d['service']} -> {d['real_server']} has weight 0" for d in diff["zero_weight"]
        ]
    dropped = {}
    for director, answer in sorted((firewall or {}).items()):
        if isinstance(answer, dict):
            dropped[director] = answer
        else:
            errors.append(f"{director}: no host firewall loaded ({answer})")
    return {
        "healthy": not errors,
        "firewall_dropped": dropped,
        "errors": errors,
        "warnings": warnings,
        "vips": holders,
        "vrrp": {d: {k: v.get("state") for k, v in (s or {}).items()} for d, s in vrrp.items() if isinstance(s, dict)},
        "servers": servers,
        "ipvs": ipvs_report,
    }


def table(health: dict[str, Any]) -> str:
    lines = ["VIP              held by", *(f"{vip:16} {', '.join(who) or '-'}" for vip, who in health["vips"].items())]
    lines += ["", "director  VRRP"]
    lines += [
        f"{d:9} " + " ".join(f"{k}={v}" for k, v in sorted(states.items()))
        for d, states in sorted(health["vrrp"].items())
    ]
    lines += ["", "backend          server  status     sessions  (as seen by the VIP holder)"]
    lines += [f"{s['backend']:16} {s['server']:7} {s['status']:10} {s['sessions']:8}" for s in health["servers"]]
    lines += ["", "director  IPVS table", *(f"{d:9} {v}" for d, v in sorted(health.get("ipvs", {}).items()))]
    lines += ["", "director  firewall: packets dropped since it was loaded"]
    lines += [
        f"{d:9} " + " ".join(f"{chain}={n}" for chain, n in sorted(counts.items()))
        for d, counts in sorted(health.get("firewall_dropped", {}).items())
    ]
    lines += ["", "healthy" if health["healthy"] else "NOT HEALTHY"]
    lines += [f"error: {e}" for e in health["errors"]] + [f"warning: {w}" for w in health["warnings"]]
    return "\n".join(lines)


def health(timeout: int = 5):
    """Who holds each VIP, VRRP states, HAProxy backends; errors for outage and split brain."""
    client = salt.client.get_local_client(__opts__["conf_file"])  # noqa: F821
    funs = ["vip.held", "vip.vrrp_state", "haproxy_runtime.servers", "ipvs.check", "firewall.dropped", "cluster.model"]
    # One job to every director: an unreachable one costs one timeout, not four.
    answers = client.cmd(
        "roles:director", funs, [[] for _ in funs], tgt_type="grain", timeout=timeout, gather_job_timeout=timeout
    )
    directors = sorted(answers)

    def part(fun: str) -> dict:
        return {d: (a.get(fun) if isinstance(a, dict) else a) for d, a in answers.items()}

    model = next((m for m in part("cluster.model").values() if isinstance(m, dict)), {})
    vips = [v for addrs in model.get("vips", {}).values() for v in addrs]
    result = report(
        vips,
        part("vip.held"),
        part("vip.vrrp_state"),
        part("haproxy_runtime.servers"),
        part("ipvs.check"),
        part("firewall.dropped"),
    )
    if not directors:
        result["errors"].append("no director answered")
        result["healthy"] = False
    if __opts__.get("output") in (None, "nested", "txt", "highstate"):  # noqa: F821
        return table(result)
    return result
