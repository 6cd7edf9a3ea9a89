"""
Take nodes out of, or back into, rotation on this director: HAProxy (every
backend that has the node) and IPVS (every virtual service with the node's
address), in one job. The reactor calls it on every director when a backend
service fails or a minion is lost, and when they are back.

CLI examples::

    salt-call balancer.set_nodes '[web2]' drain
    salt-call balancer.set_nodes '[web2, dns1]' ready
"""

from __future__ import annotations

from typing import Any

try:
    from salt.exceptions import CommandExecutionError
except ImportError:  # pragma: no cover - outside Salt

    class CommandExecutionError(Exception):  # type: ignore[no-redef]
        pass


__virtualname__ = "balancer"
__load__ = ["set_nodes"]


def __virtual__():
    if "haproxy_runtime.set_server_everywhere" in __salt__:  # noqa: F821
        return __virtualname__
    return (False, "balancer: needs the haproxy_runtime module (a director; saltutil.sync_all)")


def set_nodes(nodes: list[str] | str, admin_state: str = "ready", unless_serving: bool = False) -> dict[str, Any]:
    """Set each node ``admin_state`` (ready, drain, maint) in HAProxy and, where
    this kernel has IPVS, in IPVS. Nodes this director does not balance to are
    skipped, and with ``unless_serving`` so are nodes its health checks see
    serving (to drain or maint only). Returns {node: {"haproxy": {backend:
    state}, "ipvs": [changes]}}, or {node: {"serving": True}} for those left."""
    if admin_state not in ("ready", "drain", "maint"):
        raise CommandExecutionError(f"admin_state {admin_state!r} is not one of ready, drain, maint")
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
    return done


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
