"""
States for reactors and orchestration: drain or enable a node in HAProxy, and
assert who holds a VIP.

.. code-block:: yaml

    drain-web2:
      cluster_lb.server_state:
        - name: web2
        - admin_state: drain

    vip-on-master:
      cluster_lb.vip_held:
        - name: 192.168.1.200
        - holder: master
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


def server_state(name: str, admin_state: str = "ready"):
    """The node ``name`` is ``admin_state`` (ready, drain or maint) in every HAProxy backend that has it.

    (Not ``state``: that key names the state module in Salt's low data.)"""
    state = admin_state
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    if state not in ("ready", "drain", "maint"):
        ret.update(result=False, comment=f"state {state!r} is not one of ready, drain, maint")
        return ret
    rows = __salt__["haproxy_runtime.servers"]()  # noqa: F821
    if not any(row["server"] == name for row in rows):
        ret.update(result=False, comment=f"no HAProxy backend has a server named {name!r}")
        return ret
    todo = plan(rows, name, state)
    if not todo:
        ret["comment"] = f"{name} is already {state} in every backend"
        return ret
    ret["changes"] = {backend: {"old": old, "new": state} for backend, old in todo.items()}
    if __opts__["test"]:  # noqa: F821
        ret.update(result=None, comment=f"{name} would be set {state} in {', '.join(sorted(todo))}")
        return ret
    for backend in todo:
        __salt__["haproxy_runtime.set_state"](backend, name, state)  # noqa: F821
    ret["comment"] = f"{name} set {state} in {', '.join(sorted(todo))}"
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
