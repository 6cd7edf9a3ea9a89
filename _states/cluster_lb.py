"""
States for reactors and orchestration: drain or enable a node in HAProxy and
IPVS, and assert who holds a VIP.

.. code-block:: yaml

    drain-web2:
      cluster_lb.server_state:
        - name: web2
        - admin_state: drain

    vip-on-master:
      cluster_lb.vip_held:
        - name: 192.168.1.200
        - holder: master

    topology-retired-drained:
      cluster_lb.retired_drained:
        - wait: 30
"""

from __future__ import annotations

__virtualname__ = "cluster_lb"


def __virtual__():
    if "haproxy_runtime.servers" in __salt__ and "vip.held" in __salt__:  # noqa: F821
        return __virtualname__
    return (False, "cluster_lb: needs the haproxy_runtime and vip modules (saltutil.sync_all)")


def plan(rows: list[dict], server: str, state: str) -> dict[str, str]:
    """Backends where ``server`` is not yet in ``state`` -> its current status (pure)."""
    wanted = {"ready": ("UP", "DOWN", "NOLB"), "drain": ("DRAIN",), "maint": ("MAINT",)}[state]
    return {
        row["backend"]: row["status"]
        for row in rows
        if row["server"] == server and not any(row["status"].startswith(w) for w in wanted)
    }


def _ipvs_member(name: str) -> bool:
    model = __salt__["cluster.model"]()  # noqa: F821
    return any(rs["name"] == name for vs in model["ipvs"]["virtual_servers"] for rs in vs["real_servers"])


def server_state(name: str, admin_state: str = "ready"):
    """The node ``name`` is ``admin_state`` (ready, drain or maint) in every HAProxy
    backend that has it and, where this kernel runs IPVS, in every IPVS virtual
    service (drain and maint: weight 0; ready: the topology's weight).

    (Not ``state``: that key names the state module in Salt's low data.)"""
    state = admin_state
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if state not in ("ready", "drain", "maint"):
        ret.update(result=False, comment=f"state {state!r} is not one of ready, drain, maint")
        return ret
    if not __opts__["test"] and "balancer.service_drained" in __salt__:  # noqa: F821
        # The operator's word from now on: the periodic check does not ready it.
        __salt__["balancer.service_drained"](forget=[name])  # noqa: F821
    rows = __salt__["haproxy_runtime.servers"]()  # noqa: F821
    ipvs = "ipvs.node_plan" in __salt__  # noqa: F821
    in_haproxy = any(row["server"] == name for row in rows)
    if not in_haproxy and not (ipvs and _ipvs_member(name)):
        where = "HAProxy backend or IPVS virtual service" if ipvs else "HAProxy backend"
        ret.update(result=False, comment=f"no {where} has a server named {name!r}")
        return ret
    todo = plan(rows, name, state)
    ipvs_todo = __salt__["ipvs.node_plan"](name, state) if ipvs else []  # noqa: F821
    if not todo and not ipvs_todo:
        ret["comment"] = f"{name} is already {state} everywhere"
        return ret
    ret["changes"] = {backend: {"old": old, "new": state} for backend, old in todo.items()}
    for change in ipvs_todo:
        key = f"ipvs {change['protocol']} {change['service']} -> {change['real_server']}"
        ret["changes"][key] = {"old": f"weight {change['old']}", "new": f"weight {change['new']}"}
    places = ", ".join(sorted(ret["changes"]))
    if __opts__["test"]:  # noqa: F821
        ret.update(result=None, comment=f"{name} would be set {state} in {places}")
        return ret
    for backend in todo:
        __salt__["haproxy_runtime.set_state"](backend, name, state)  # noqa: F821
    if ipvs_todo:
        __salt__["ipvs.set_node"](name, state)  # noqa: F821
    ret["comment"] = f"{name} set {state} in {places}"
    return ret


def retired_drained(name: str, wait: float = 30):
    """Servers this director balances to but the topology no longer has take
    no new sessions (HAProxy drain, IPVS weight 0); waits up to ``wait``
    seconds for their sessions to end. Run before the configuration that
    drops them (orch/topology.sls)."""
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    entries = __salt__["balancer.retired"]()  # noqa: F821
    if not entries:
        ret["comment"] = "every server balanced here is in the topology"
        return ret
    where = [
        f"{e['backend']}/{e['server']}" if e["kind"] == "haproxy" else f"ipvs {e['service']} -> {e['server']}"
        for e in entries
    ]
    if not all(e["drained"] for e in entries):
        ret["changes"] = {w: {"old": "in rotation", "new": "drained"} for w in where}
    if __opts__["test"]:  # noqa: F821
        ret.update(result=None, comment="would drain (not in the topology): " + ", ".join(where))
        return ret
    done = __salt__["balancer.drain_retired"](wait)  # noqa: F821
    left = done["sessions_left"]
    ret["comment"] = f"drained (not in the topology): {', '.join(where)}" + (
        f"; {left} sessions still open after {wait} s" if left else "; no session left"
    )
    return ret


def vip_held(name: str, holder: str):
    """Succeeds when the VIP ``name`` is held here exactly when this minion is ``holder``."""
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    held = __salt__["vip.held"]()  # noqa: F821
    if name not in held:
        ret.update(result=False, comment=f"{name} is not a VIP of the cluster topology")
        return ret
    me = __grains__["id"]  # noqa: F821
    here = held[name] is not None
    if here == (me == holder):
        ret["comment"] = f"{name} is {'held here' if here else 'not held here'}, as expected ({holder} holds it)"
    else:
        ret.update(
            result=False,
            comment=f"{name} is {'held here' if here else 'not held here'} on {me}, but {holder} should hold it",
        )
    return ret
