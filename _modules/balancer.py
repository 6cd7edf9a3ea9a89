"""
Take nodes out of, or back into, rotation on this director: HAProxy (every
backend that has the node) and IPVS (every virtual service with the node's
address), in one job. The reactor calls it on every director when a backend
service fails or a minion is lost, and when they are back. A director keeps
the nodes drained for a stopped service (``for_service``) until they are set
again (``service_drained``): the masters' periodic check readies those whose
services run again, whichever master drained them, and leaves an operator's
drain alone.

It also serves topology changes (orch/topology.sls): servers that the
topology no longer has are drained before the new configuration drops them
(``drain_retired``), and a director counts as rolled out once every server
the topology gives it is in rotation (``wait_in_rotation``).

CLI examples::

    salt-call balancer.set_nodes '[web2]' drain
    salt-call balancer.set_nodes '[web2, dns1]' ready
    salt-call balancer.service_drained
    salt-call balancer.retired
    salt-call balancer.drain_retired wait=30
    salt-call balancer.wait_in_rotation timeout=120
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterable
from typing import Any

import salt.utils.atomicfile
from salt.exceptions import CommandExecutionError

__virtualname__ = "balancer"
__load__ = ["set_nodes", "service_drained", "retired", "drain_retired", "wait_in_rotation"]

# The nodes this director drained for a stopped service, in its minion's cache.
SERVICE_DRAINED_FILE = "balancer_service_drained.json"


def __virtual__():
    if "haproxy_runtime.set_server_everywhere" in __salt__:  # noqa: F821
        return __virtualname__
    return (False, "balancer: needs the haproxy_runtime module (a director; saltutil.sync_all)")


def set_nodes(
    nodes: list[str] | str, admin_state: str = "ready", unless_serving: bool = False, for_service: bool = False
) -> dict[str, Any]:
    """Set each node ``admin_state`` (ready, drain, maint) in HAProxy and, where
    this kernel has IPVS, in IPVS. Nodes this director does not balance to are
    skipped, and with ``unless_serving`` so are nodes its health checks see
    serving (to drain or maint only). ``for_service``: a drain for a stopped
    service (the reactor's, the periodic check's), kept until the node is set
    again (``service_drained``). Returns {node: {"haproxy": {backend:
    state}, "ipvs": [changes]}}, or {node: {"serving": True}} for those left."""
    if admin_state not in ("ready", "drain", "maint"):
        raise CommandExecutionError(f"admin_state {admin_state!r} is not one of ready, drain, maint")
    if for_service and admin_state != "drain":
        raise CommandExecutionError(f"for_service is a drain's, not admin_state {admin_state!r}'s")
    names = [nodes] if isinstance(nodes, str) else list(nodes)
    known = __salt__["cluster.model"]()["nodes"]  # noqa: F821
    live = _live_checks() if unless_serving and admin_state != "ready" else None
    done: dict[str, Any] = {}
    for name in names:
        if name not in known:
            continue
        if live is not None and is_serving(name, known[name]["address"], *live):
            done[name] = {"serving": True}
            continue
        result: dict[str, Any] = {"haproxy": __salt__["haproxy_runtime.set_server_everywhere"](name, admin_state)}  # noqa: F821
        if "ipvs.set_node" in __salt__:  # noqa: F821
            result["ipvs"] = __salt__["ipvs.set_node"](name, admin_state)  # noqa: F821
        done[name] = result
    set_now = [name for name in done if "haproxy" in done[name]]
    _service_drained(set_now if for_service else [], set_now)
    return done


def service_drained(forget: list[str] | str | None = None) -> list[str]:
    """
    The nodes this director drained for a stopped service (``set_nodes``
    with ``for_service``) and has not set since. ``forget``: these nodes'
    drains are no longer a service's (an operator set them otherwise, as
    the ``cluster_lb.server_state`` state does).

    CLI example::

        salt-call balancer.service_drained
    """
    return _service_drained([], [forget] if isinstance(forget, str) else list(forget or []))


def kept_drains(kept: Iterable[str], drained: Iterable[str], set_now: Iterable[str]) -> list[str]:
    """The service drains kept after a ``set_nodes`` call (pure): a node set
    now is kept only when it was drained for a service now (an operator's
    drain or maint, or a ready, ends the service's)."""
    return sorted((set(kept) - set(set_now)) | set(drained))


def _service_drained(drained: list[str], set_now: list[str]) -> list[str]:
    """The kept service drains after this call, read and written under a
    lock (the reactor's jobs run side by side)."""
    path = os.path.join(__opts__["cachedir"], SERVICE_DRAINED_FILE)  # noqa: F821
    with open(f"{path}.lock", "w", encoding="ascii") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path, encoding="utf-8") as handle:
                kept = json.load(handle)
        except (OSError, ValueError):
            kept = []
        kept = [n for n in kept if isinstance(n, str)] if isinstance(kept, list) else []
        after = kept_drains(kept, drained, set_now)
        if after != sorted(kept):
            with salt.utils.atomicfile.atomic_open(path, "w") as handle:
                json.dump(after, handle)
    return after


# HAProxy statuses of a server that passes its health checks (DRAIN and NOLB
# are administrative: the server itself answers).
SERVING = ("UP", "DRAIN", "NOLB", "no check")


def is_serving(name: str, address: str, haproxy: list[dict], ipvs: list[dict] | None) -> bool:
    """Whether a node passes this director's health checks (pure): one of its
    HAProxy servers is up, or one of its IPVS real servers is in the table
    (keepalived removes those that fail their checks)."""
    if any(s["server"] == name and s["status"].startswith(SERVING) for s in haproxy):
        return True
    return any(r["address"] == address for vs in ipvs or [] for r in vs["real_servers"])


def _live_checks() -> tuple[list[dict], list[dict] | None]:
    """This director's HAProxy servers and IPVS table (None without IPVS), read once per call."""
    ipvs = __salt__["ipvs.services"]() if "ipvs.services" in __salt__ else None  # noqa: F821
    return __salt__["haproxy_runtime.servers"](), ipvs  # noqa: F821


def retired_entries(model: dict, haproxy: list[dict], ipvs_diff: dict | None) -> list[dict[str, Any]]:
    """Live balancer entries the topology no longer has (pure): HAProxy servers
    absent from their backend in the model, and the IPVS real servers that
    ``ipvs.check`` (None without IPVS) finds extra. Each: {kind, backend or
    service, server, drained (takes no new sessions already), sessions}."""
    wanted = {name: {s["name"] for s in b["servers"]} for name, b in model["haproxy"]["backends"].items()}
    out: list[dict[str, Any]] = [
        {
            "kind": "haproxy",
            "backend": row["backend"],
            "server": row["server"],
            "drained": row["status"].startswith(("DRAIN", "MAINT")),
            "sessions": row["sessions"],
        }
        for row in haproxy
        if row["backend"] in wanted and row["server"] not in wanted[row["backend"]]
    ]
    for extra in (ipvs_diff or {}).get("extra_real_servers", []):
        protocol, service = extra["service"].split(" ", 1)
        out.append(
            {
                "kind": "ipvs",
                "protocol": protocol,
                "service": service,
                "server": extra["real_server"],
                "drained": extra["weight"] == 0,
                "sessions": extra["active"],
            }
        )
    return out


def not_in_rotation(model: dict, haproxy: list[dict], ipvs_diff: dict | None) -> list[str]:
    """Why this director does not yet balance to every server of the topology
    (pure; empty when it does): a server missing from its HAProxy backend or
    not UP there (administrative DRAIN/MAINT count as deliberate), or, from
    ``ipvs.check`` (None without IPVS), an IPVS virtual service or real server
    missing from the table."""
    rows = {(r["backend"], r["server"]): r for r in haproxy}
    problems = []
    for name, backend in sorted(model["haproxy"]["backends"].items()):
        for server in backend["servers"]:
            row = rows.get((name, server["name"]))
            if row is None:
                problems.append(f"{name}/{server['name']}: not in HAProxy's configuration")
            elif not row["status"].startswith(("UP", "DRAIN", "MAINT")):
                problems.append(f"{name}/{server['name']}: {row['status']} ({row['check']})")
    if ipvs_diff is not None:
        problems += [f"IPVS {key}: virtual service not in the table" for key in ipvs_diff["missing_services"]]
        problems += [
            f"IPVS {d['service']}: {d['node']} ({d['real_server']}) not in the table"
            for d in ipvs_diff["missing_real_servers"]
        ]
    return problems


def _ipvs_diff() -> dict | None:
    """This director's IPVS table against the topology (None without IPVS)."""
    return __salt__["ipvs.check"]() if "ipvs.check" in __salt__ else None  # noqa: F821


def retired() -> list[dict[str, Any]]:
    """What this director still balances to that the topology no longer has."""
    model = __salt__["cluster.model"]()  # noqa: F821
    return retired_entries(model, __salt__["haproxy_runtime.servers"](), _ipvs_diff())  # noqa: F821


def drain_retired(wait: float = 30) -> dict[str, Any]:
    """Drain every retired entry (HAProxy: drain; IPVS: weight 0), then wait up
    to ``wait`` seconds for their sessions to end, so that the configuration
    that drops them cuts no one off. Returns {drained: [...], sessions_left: n}."""
    entries = retired()
    for entry in entries:
        if entry["drained"]:
            continue
        if entry["kind"] == "haproxy":
            __salt__["haproxy_runtime.set_state"](entry["backend"], entry["server"], "drain")  # noqa: F821
        else:
            __salt__["ipvs.set_weight"](entry["protocol"], entry["service"], entry["server"], 0)  # noqa: F821
    deadline = time.monotonic() + float(wait)
    left = sum(e["sessions"] for e in entries)
    while entries and left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = sum(e["sessions"] for e in retired())
    return {"drained": entries, "sessions_left": left}


def wait_in_rotation(timeout: float = 120) -> list[str]:
    """Wait until this director balances to every server of the topology (its
    health checks pass); raises naming what is still missing after ``timeout``."""
    deadline = time.monotonic() + float(timeout)
    while True:
        model = __salt__["cluster.model"]()  # noqa: F821
        problems = not_in_rotation(model, __salt__["haproxy_runtime.servers"](), _ipvs_diff())  # noqa: F821
        if not problems:
            return []
        if time.monotonic() > deadline:
            missing = "; ".join(problems)
            raise CommandExecutionError(f"not in rotation after {timeout} s: {missing}")
        time.sleep(1)
