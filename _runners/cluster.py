"""
One command for "is my cluster healthy?", across both directors; and the
reactor's one door for what the minions' beacons report.

    salt-run cluster.health              # a table for people
    salt-run cluster.health --out=json   # the same, for programs
    salt-run cluster.react ...           # called by reactor/cluster_watch.sls
    salt-run cluster.reconcile           # the master's periodic check (etc/salt/master)

Reports who holds each VIP (an error when nobody does: outage; or more than
one director: split brain), each director's VRRP states, HAProxy's backend
servers as the VIP holder sees them, the VIP holder's IPVS table compared
with the topology (where the kernel has IPVS), and the packets each
director's host firewall dropped (an error when none is loaded). The report logic is a pure
function (``report``), tested on recorded answers.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import salt.cache
import salt.client
import salt.pillar
import salt.utils.minions
import salt.utils.network

log = logging.getLogger(__name__)

__virtualname__ = "cluster"
__load__ = ["health", "react", "dropped", "reconcile"]

# Where dropped events are counted (the master's cache: salt-run cache.fetch).
DROPPED_BANK = "cluster/reactor"
DROPPED_KEY = "dropped"
DROPPED_KEEP = 20
_dropped_lock = threading.Lock()
# Salt's text for a minion that did not return in time.
NO_RETURN = "Minion did not return"
# What a cluster_watch beacon may say (see _beacons/cluster_watch.py).
SERVICE_STATES = ("active", "inactive", "failed", "activating", "deactivating", "reloading")
VRRP_STATES = ("MASTER", "BACKUP", "FAULT", "STOP")
DOWN = ("failed", "inactive")


def __virtual__():
    return __virtualname__


def report(
    vips: list[str],
    held: dict,
    vrrp: dict,
    backends: dict,
    ipvs: dict | None = None,
    firewall: dict | None = None,
    expected: list[str] | None = None,
    seen: dict | None = None,
) -> dict[str, Any]:
    """Health from the directors' answers: held {director: {vip: iface|None}},
    vrrp {director: {instance: {state}}}, backends {director: [server rows]},
    ipvs {director: ipvs.check's answer, or a string when IPVS is not there},
    firewall {director: firewall.dropped's answer, or a string when no
    firewall is loaded (an error: the director faces the Internet bare)}.

    ``expected``: the topology's directors; one that did not answer is an
    error, and cannot say whether it holds a VIP. ``seen``: {vip: {"from":
    node, "directors": [who answers ARP for it there]} or a string saying
    why nobody outside the directors could look}. Split brain per VIP is
    "yes" (two holders, by their word or on the wire), "no", or "unknown"
    when a director is silent and no node outside the directors sees the
    VIP's segment."""
    errors, warnings = [], []
    silent = sorted(d for d in set(expected or []) | set(held) if not isinstance(held.get(d), dict))
    seen = seen or {}
    holders, split = _holders(vips, held, seen, silent, errors, warnings)
    errors += [f"{d}: no answer ({held.get(d, 'silent: cut off, down, or its minion is')})" for d in silent]
    _split_groups(vrrp, errors)
    active = sorted({d for who in holders.values() for d in who})
    servers = _servers_report(active, backends, errors, warnings)
    ipvs_report = {
        director: _ipvs_report(director, (ipvs or {}).get(director), errors, warnings) for director in active
    }
    # Every director's sync threads, the standby's included: its backup
    # thread holds the connections it must carry on when it takes over.
    for director, diff in sorted((ipvs or {}).items()):
        if isinstance(diff, dict):
            errors += [f"IPVS on {director}: connection sync: {problem}" for problem in diff.get("sync", [])]
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
        "split_brain": split,
        "seen": seen,
        "vrrp": {d: {k: v.get("state") for k, v in (s or {}).items()} for d, s in vrrp.items() if isinstance(s, dict)},
        "servers": servers,
        "ipvs": ipvs_report,
    }


def _holders(
    vips: list[str], held: dict, seen: dict, silent: list[str], errors: list[str], warnings: list[str]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Who holds each VIP (by the directors' word and on the wire), and
    whether that is a split brain: yes, no or unknown."""
    holders, split = {}, {}
    for vip in vips:
        said = {d for d, h in held.items() if isinstance(h, dict) and h.get(vip)}
        view = seen.get(vip)
        on_wire = set(view["directors"]) if isinstance(view, dict) else set()
        holders[vip] = sorted(said | on_wire)
        if len(holders[vip]) > 1:
            split[vip] = "yes"
            errors.append(f"split brain: {vip} is held by {', '.join(holders[vip])}")
        elif silent and not isinstance(view, dict):
            split[vip] = "unknown"
            warnings.append(
                f"split brain unknown for {vip}: {', '.join(silent)} did not answer "
                f"and no node outside the directors could look ({view or 'not asked'})"
            )
        else:
            split[vip] = "no"
        if not holders[vip]:
            errors.append(f"outage: no director holds {vip}")
    return holders, split


def _split_groups(vrrp: dict, errors: list[str]) -> None:
    """A director whose VRRP instances are not all in one state: its sync
    group is split (one network's VIPs held, the other's given up), which
    no transition of its own will mend."""
    for director, states in sorted(vrrp.items()):
        if not isinstance(states, dict):
            continue
        instances = {
            name.removeprefix("INSTANCE-"): answer.get("state")
            for name, answer in states.items()
            if name.startswith("INSTANCE-") and isinstance(answer, dict)
        }
        if len(set(instances.values())) > 1:
            listed = ", ".join(f"{name} {state}" for name, state in sorted(instances.items()))
            errors.append(f"{director}: VRRP sync group split ({listed})")


def _servers_report(active: list[str], backends: dict, errors: list[str], warnings: list[str]) -> list[dict]:
    """Every HAProxy server row of the active directors; a backend with no server up is an error."""
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
    return servers


def _ipvs_report(director: str, diff: Any, errors: list[str], warnings: list[str]) -> str:
    """One director's IPVS table against the topology (ipvs.check's answer)."""
    if not isinstance(diff, dict):
        return f"not checked: {diff}" if diff else "not checked"
    errors += [f"IPVS on {director}: virtual service {k} is missing" for k in diff["missing_services"]]
    errors += [f"IPVS on {director}: unexpected virtual service {k}" for k in diff["extra_services"]]
    warnings += [
        f"IPVS on {director}: {d['service']} lacks {d['node']} ({d['real_server']}: failed its check or not added)"
        for d in diff["missing_real_servers"]
    ]
    warnings += [
        f"IPVS on {director}: {d['service']} has unexpected {d['real_server']}" for d in diff["extra_real_servers"]
    ]
    warnings += [f"IPVS on {director}: {d['service']} -> {d['real_server']} has weight 0" for d in diff["zero_weight"]]
    return "matches the topology" if diff["matches"] else "differs from the topology"


def table(health: dict[str, Any]) -> str:
    split = health.get("split_brain", {})
    lines = ["VIP              held by           split brain"]
    lines += [f"{vip:16} {', '.join(who) or '-':17} {split.get(vip, '-')}" for vip, who in health["vips"].items()]
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


def _master_pillar(minion: str) -> Mapping:
    """A minion's pillar as the master compiles it (by ID; not as a minion says it)."""
    return salt.pillar.get_pillar(__opts__, {}, minion, saltenv="base").compile_pillar()  # noqa: F821


def _topology(pillar: Mapping) -> Mapping:
    topology = pillar.get("cluster")
    return topology if isinstance(topology, Mapping) else {}


def _directors(topology: Mapping) -> list[str]:
    """The topology's directors."""
    nodes = topology.get("nodes") if isinstance(topology.get("nodes"), Mapping) else {}
    return sorted(n for n, spec in nodes.items() if "director" in ((spec or {}).get("roles") or []))


def director_macs(grains: dict) -> dict[str, str]:
    """MAC address -> director, from the directors' (cached) grains (pure)."""
    out = {}
    for director, data in grains.items():
        for iface, mac in ((data or {}).get("hwaddr_interfaces") or {}).items():
            if iface != "lo" and mac and mac != "00:00:00:00:00:00":
                out[mac.lower()] = director
    return out


def _seen_from_outside(client: Any, topology: Mapping, vips: Mapping, directors: list[str], timeout: int) -> dict:
    """Who answers ARP for each VIP, asked by a node that is no director on
    the VIP's network (the nas first): evidence that does not depend on the
    directors answering."""
    cache = salt.cache.factory(__opts__)  # noqa: F821
    grains = {d: cache.fetch("grains", d) for d in directors}
    owners = director_macs(grains)
    seen: dict[str, Any] = {}
    nodes = topology.get("nodes") or {}
    for network, addresses in vips.items():
        lookouts = sorted(
            (name for name, spec in nodes.items() if name not in directors and _on_network(spec, network)),
            key=lambda name: ("nas" not in nodes[name].get("roles", []), name),
        )
        if not lookouts:
            seen.update(dict.fromkeys(addresses, f"no node but the directors is on the {network} network"))
            continue
        answer = client.cmd(lookouts[0], "vip.arp_answers", [list(addresses)], tgt_type="list", timeout=timeout)
        found = answer.get(lookouts[0]) if isinstance(answer, dict) else None
        for address in addresses:
            macs = found.get(address) if isinstance(found, dict) else None
            if not isinstance(macs, list):
                seen[address] = f"{lookouts[0]} could not look: {macs if isinstance(found, dict) else found}"
                continue
            who = sorted({owners.get(mac, f"unknown MAC {mac}") for mac in macs})
            seen[address] = {"from": lookouts[0], "directors": who}
    return seen


def _interfaces(spec: Any) -> list[Mapping]:
    """A topology node's interfaces, as the pillar gives them (pure)."""
    interfaces = spec.get("interfaces") if isinstance(spec, Mapping) else None
    return [i for i in interfaces.values() if isinstance(i, Mapping)] if isinstance(interfaces, Mapping) else []


def _on_network(spec: Any, network: str) -> bool:
    return any(i.get("network") == network for i in _interfaces(spec))


def health(timeout: int = 5):
    """Who holds each VIP, VRRP states, HAProxy backends; errors for outage and split brain."""
    client = salt.client.get_local_client(__opts__["conf_file"])  # noqa: F821
    # The directors and VIPs as the master compiles the topology: a minion's
    # grains (roles) are its own word, and an impostor's answers count for nothing.
    topology = _topology(_master_pillar("cluster-health"))
    expected = _directors(topology)
    by_network = topology.get("vips") if isinstance(topology.get("vips"), Mapping) else {}
    vips = [str(v) for addrs in by_network.values() for v in addrs]
    funs = ["vip.held", "vip.vrrp_state", "haproxy_runtime.servers", "ipvs.check", "firewall.dropped"]
    # One job to every director: an unreachable one costs one timeout, not four.
    answers = (
        client.cmd(expected, funs, [[] for _ in funs], tgt_type="list", timeout=timeout, gather_job_timeout=timeout)
        if expected
        else {}
    )
    directors = sorted(answers)

    def part(fun: str) -> dict:
        return {d: (a.get(fun) if isinstance(a, dict) else a) for d, a in answers.items()}

    seen = _seen_from_outside(client, topology, by_network, expected, timeout)
    result = report(
        vips,
        part("vip.held"),
        part("vip.vrrp_state"),
        part("haproxy_runtime.servers"),
        part("ipvs.check"),
        part("firewall.dropped"),
        expected=expected,
        seen=seen,
    )
    if not directors:
        result["errors"].append("no director answered")
        result["healthy"] = False
    drops = dropped()
    result["reactor_dropped"] = drops["count"]
    if drops["count"]:
        last = drops["last"][-1] if drops["last"] else {}
        result["warnings"].append(
            f"the reactor dropped {drops['count']} beacon events (salt-run cluster.dropped); "
            f"the last at {last.get('time')}: {last.get('reason')}"
        )
    if __opts__.get("output") in (None, "nested", "txt", "highstate"):  # noqa: F821
        return table(result)
    return result


# ---------------------------------------------------------------------------
# The reactor's door: cluster_watch beacon events
# ---------------------------------------------------------------------------


class Dropped(Exception):
    """An event the reactor does not act on; the message says why."""


def _watch_config(pillar: Mapping) -> dict:
    """A node's cluster_watch beacon settings, from its pillar (the master's word)."""
    config = ((pillar.get("beacons") or {}) if isinstance(pillar, Mapping) else {}).get("cluster_watch") or []
    merged: dict = {}
    for item in config if isinstance(config, list) else [config]:
        if isinstance(item, Mapping):
            merged.update(item)
    return merged


def _shown(value: Any) -> str:
    """A value of an event, in a message: quoted, cut short."""
    return repr(value[:60] if isinstance(value, str) else value)[:80]


def _text(field: str, value: Any, allowed: tuple[str, ...] | None = None, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (allowed is not None and value not in allowed):
        raise Dropped(f"{field} {_shown(value)} is not " + (f"one of {', '.join(allowed)}" if allowed else "a string"))
    return value


def screen(tag: str, data: Mapping, topology: Mapping, watch: Mapping) -> dict:
    """What a cluster_watch event claims, once checked against the topology
    (pure). Raises Dropped naming the reason otherwise.

    A minion's event is its own word, tag and ``id`` included: the master
    passes a batch of beacon events on as the minion wrote them. So the claim
    is about the node the tag names, which must be a node of the topology
    whose role sends that kind (``watch``: that node's cluster_watch settings
    from its pillar: the services of its roles, ``vrrp`` on directors,
    ``backend`` on balanced nodes). Whether it is true is for the node itself
    to confirm (``react``)."""
    parts = tag.split("/") if isinstance(tag, str) else []
    if len(parts) != 5 or parts[:2] != ["salt", "beacon"] or parts[3] != "cluster_watch":
        raise Dropped(f"tag {_shown(tag)} is not salt/beacon/<node>/cluster_watch/<kind>")
    node, kind = parts[2], parts[4]
    event = data.get("data") if isinstance(data.get("data"), Mapping) else data
    nodes = topology.get("nodes") if isinstance(topology, Mapping) else None
    if not isinstance(nodes, Mapping) or node not in nodes:
        raise Dropped(f"node {_shown(node)} is not a node of the topology")
    if event.get("id", data.get("id")) != node:
        raise Dropped(f"event id {_shown(event.get('id'))} is not the node its tag names ({node})")
    if event.get("kind") != kind:
        raise Dropped(f"kind {_shown(event.get('kind'))} does not match the tag's {kind!r}")
    roles = nodes[node].get("roles") or [] if isinstance(nodes[node], Mapping) else []
    claim: dict[str, Any] = {"kind": kind, "node": node}
    if kind == "service":
        services = watch.get("services") or []
        claim["name"] = _text("name", event.get("name"))
        if claim["name"] not in services:
            raise Dropped(f"name {_shown(claim['name'])} is not a service {node} watches ({', '.join(services)})")
        claim["state"] = _text("state", event.get("state"), SERVICE_STATES)
        claim["previous"] = _text("previous", event.get("previous"), SERVICE_STATES, optional=True)
        claim["first"] = event.get("first") is True
        claim["backend"] = watch.get("backend") is True
    elif kind == "vrrp":
        if "director" not in roles or not watch.get("vrrp"):
            raise Dropped(f"{node} is no director: VRRP events come from directors only")
        name = _text("name", event.get("name"))
        if not name.startswith(("INSTANCE-", "GROUP-")) or not name.split("-", 1)[1].replace("_", "").isalnum():
            raise Dropped(f"name {_shown(name)} is not a VRRP instance or sync group")
        claim["name"] = name
        claim["state"] = _text("state", event.get("state"), VRRP_STATES)
        claim["previous"] = _text("previous", event.get("previous"), VRRP_STATES, optional=True)
    else:
        raise Dropped(f"kind {_shown(kind)} is not one the reactor acts on (service, vrrp)")
    return claim


def _drop(tag: str, reason: str) -> dict:
    """Log, count (health shows it) and announce an event the reactor ignores."""
    log.warning("cluster.react: dropped %s: %s", str(tag)[:120], reason)
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "tag": str(tag)[:120], "reason": reason}
    with _dropped_lock:
        cache = salt.cache.factory(__opts__)  # noqa: F821
        record = cache.fetch(DROPPED_BANK, DROPPED_KEY) or {}
        record = {"count": int(record.get("count", 0)) + 1, "last": [*record.get("last", []), entry][-DROPPED_KEEP:]}
        cache.store(DROPPED_BANK, DROPPED_KEY, record)
    __salt__["event.send"]("cluster/reactor/dropped", entry)  # noqa: F821
    return {"dropped": reason}


def dropped(clear: bool = False) -> dict:
    """How many beacon events the reactor dropped, and the last ones with why.
    ``clear=True`` starts the count again (cluster.health warns while it is
    not zero)."""
    cache = salt.cache.factory(__opts__)  # noqa: F821
    with _dropped_lock:
        record = cache.fetch(DROPPED_BANK, DROPPED_KEY) or {"count": 0, "last": []}
        if clear:
            cache.store(DROPPED_BANK, DROPPED_KEY, {"count": 0, "last": []})
    return record


def _ask(client: Any, node: str, fun: str, arg: list, tries: int = 2) -> Any:
    """The node's own answer (its return is authenticated by the master), or
    None. A node that did not return is asked again: with one of several
    masters unreachable, a minion's return to another one can be lost."""
    for _ in range(tries):
        answer = client.cmd(node, fun, arg, tgt_type="list", timeout=10, gather_job_timeout=10)
        got = answer.get(node) if isinstance(answer, dict) else None
        if got is not None and not (isinstance(got, str) and got.startswith(NO_RETURN)):
            return got
    return None


# One VRRP transition is several events at once (each instance and the sync
# group), a failover has both directors send them, and a director that was
# cut off sends the ones it could not send when it is back: each event
# asking its own question put a dozen Salt jobs on the directors at the very
# moment they take over or give back the VIPs, and on the lab's user-mode
# directors, where each costs about a second of CPU, the web servers' answers
# came late for seconds (docs/operations.md, "Failover"). So a VRRP reaction
# first waits VRRP_SETTLE_S for the rest of its burst, and one answer of the
# director, given after an event arrived, judges that event. The reactor runs
# each reaction in a process of its own: the last answer of each director is
# kept in the master's cache directory, under a lock.
VRRP_SETTLE_S = 2.0
# A sync group's transition refreshes the director's mine this much later:
# a Salt job on a director in the seconds it takes over or gives back the
# VIPs delayed its answers (a job costs about a CPU-second on the lab's
# user-mode directors), and who holds the VIPs can wait that long.
MINE_AFTER_S = 20.0


def _vrrp_said(answer: Any, instance: str) -> Any:
    """The state a vip.vrrp_state answer gives ``instance``; what the answer
    was instead, when it is not one (pure)."""
    entry = answer.get(instance) if isinstance(answer, Mapping) else answer
    return entry.get("state") if isinstance(entry, Mapping) else entry


def _vrrp_confirms(answer: Any, instance: str, state: str) -> bool:
    """Whether a vip.vrrp_state answer says ``instance`` is in ``state`` (pure)."""
    if not isinstance(answer, Mapping):
        return False
    entry = answer.get(instance)
    return isinstance(entry, Mapping) and entry.get("state") == state


def _vrrp_state(client: Any, node: str, arrived: float, cachedir: str | None = None, now: Any = time.time) -> Any:
    """The director's vip.vrrp_state answer that judges a VRRP event which
    arrived at ``arrived``: its last answer if it gave it after that (it
    says where the node stands since the event, as a question of the
    event's own would), else a new question. Questions to one node are
    asked one at a time, so the events of one burst share one; a node that
    sends events faster than its answers come costs one question at a time."""
    with _node_lock("cluster-vrrp", node, cachedir) as directory:
        last = directory / f"{node}.json"
        try:
            kept = json.loads(last.read_text())
        except (OSError, ValueError):
            kept = {}
        asked = kept.get("asked") if isinstance(kept, dict) else None
        if isinstance(asked, (int, float)) and arrived <= asked <= now():
            return kept["answer"]
        asked = now()
        answer = _ask(client, node, "vip.vrrp_state", [])
        last.write_text(json.dumps({"asked": asked, "answer": answer}))
        return answer


def react(tag: str, data: dict):
    """
    Act on a cluster_watch beacon event (reactor/cluster_watch.sls passes it
    as a whole). Screened (``screen``), then confirmed by the node the event
    is about, through a job whose return the master authenticates; acted on
    only then. Anything else is dropped: logged, counted (``cluster.dropped``,
    ``cluster.health``) and announced as ``cluster/reactor/dropped``.

    - service down (failed, inactive): the node starts it again; a balanced
      node (web, dns) is drained on every director meanwhile.
    - service active again on a balanced node (not a reload's, not its first
      start since the minion started): ready on every director.
    - VRRP: re-sent as ``cluster/director/transition``; a sync group's
      transition refreshes that director's mine (who holds the VIPs),
      ``MINE_AFTER_S`` later.
    """
    if not isinstance(data, Mapping):
        return _drop(tag, "event data is not a mapping")
    parts = str(tag).split("/")
    node = parts[2] if len(parts) > 2 else ""
    pillar = _master_pillar(node)
    topology = _topology(pillar)
    try:
        claim = screen(tag, data, topology, _watch_config(pillar))
    except Dropped as why:
        return _drop(tag, str(why))
    directors = _directors(topology)
    client = salt.client.get_local_client(__opts__["conf_file"])  # noqa: F821
    if claim["kind"] == "vrrp":
        arrived = time.time()
        time.sleep(VRRP_SETTLE_S)
        states = _vrrp_state(client, node, arrived)
        if not _vrrp_confirms(states, claim["name"], claim["state"]):
            said = _vrrp_said(states, claim["name"])
            return _drop(tag, f"not confirmed: {node} says {claim['name']} is {said}, not {claim['state']}")
        transition = {
            "director": node,
            "instance": claim["name"],
            "state": claim["state"],
            "previous": claim["previous"],
        }
        __salt__["event.send"]("cluster/director/transition", transition)  # noqa: F821
        if claim["name"].startswith("GROUP-"):
            time.sleep(MINE_AFTER_S)
            client.cmd_async(node, "mine.update", [], tgt_type="list")
        return {"transition": transition}
    name, down = claim["name"], claim["state"] in DOWN
    ready = claim["backend"] and claim["state"] == "active" and claim["previous"] != "reloading" and not claim["first"]
    if not down and not ready:
        return {"ignored": f"{node}: {name} is {claim['state']}, nothing to do"}
    with _node_lock("cluster-service", node):
        running = _ask(client, node, "service.status", [name])
        if not isinstance(running, bool) or running == down:
            said = f"{node} says {name} running is {running!r}, the event said {claim['state']}"
            return _drop(tag, f"not confirmed: {said}")
        done: dict[str, Any] = {"node": node, "service": name}
        if down:
            done["start"] = client.cmd_async(node, "service.start", [name], tgt_type="list")
        if claim["backend"]:
            state = "drain" if down else "ready"
            kwarg = {"nodes": [node], "admin_state": state, **({"for_service": True} if down else {})}
            done[state] = client.cmd(
                directors, "balancer.set_nodes", [], tgt_type="list", kwarg=kwarg, timeout=DIRECTOR_TIMEOUT_S
            )
    return done


# A node's service reactions run one at a time, each until the directors
# answered: a restart's two events (down, then active again), asked side by
# side, could have the drain land on a director after the ready and leave the
# node out. A silent director costs each reaction this long.
DIRECTOR_TIMEOUT_S = 15


@contextlib.contextmanager
def _node_lock(kind: str, node: str, cachedir: str | None = None) -> Iterator[Path]:
    """Hold ``node``'s lock of ``kind`` (a directory in the master's cache
    directory, which it yields) across the reactions' processes. ``node``
    is a node of the topology (``screen``), so it is safe in a file name."""
    directory = Path(cachedir or __opts__["cachedir"]) / kind  # noqa: F821
    directory.mkdir(mode=0o700, exist_ok=True)
    with open(directory / f"{node}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield directory


def stopped_services(answers: Mapping, topology: Mapping, catalogue: Mapping) -> dict[str, dict]:
    """
    What the periodic check must start (pure): per node of the topology that
    answered, the services it says are not running among those the
    catalogue's formulas run as daemons, and whether the directors must
    drain it meanwhile (a role the catalogue watches as a ``backend``). A
    node's answer is only about itself: it can get only its own services
    started, and only known ones; anything else in it is ignored.
    """
    nodes = topology.get("nodes") if isinstance(topology.get("nodes"), Mapping) else {}
    formulas = catalogue.get("formulas") if isinstance(catalogue.get("formulas"), Mapping) else {}
    roles = catalogue.get("roles") if isinstance(catalogue.get("roles"), Mapping) else {}
    daemons = {
        entry["service"]
        for entry in formulas.values()
        if isinstance(entry, Mapping) and isinstance(entry.get("service"), str) and not entry.get("oneshot")
    }
    out: dict[str, dict] = {}
    for node, answer in sorted(answers.items()):
        if node not in nodes or not isinstance(answer, Mapping):
            continue
        down = sorted(name for name, running in answer.items() if name in daemons and running is False)
        if not down:
            continue
        node_roles = (nodes[node] or {}).get("roles") or []
        backend = any(((roles.get(r) or {}).get("watch") or {}).get("backend") is True for r in node_roles)
        out[node] = {"start": down, "drain": backend}
    return out


def ready_again(answers: Mapping, drained: list[str], stopped: Mapping) -> list[str]:
    """The nodes to ready (pure): drained for a stopped service (``drained``,
    as the directors keep it: by either master), answering now, with every
    watched service running (a masked one holds the node out: an operator's
    doing), and nothing left to start (``stopped``)."""
    out = []
    for node in drained:
        answer = answers.get(node)
        if node in stopped or not isinstance(answer, Mapping) or not answer:
            continue
        if all(running is True for running in answer.values()):
            out.append(node)
    return out


def _start_again(client, node: str, work: Mapping, directors: list[str]) -> None:
    """Start a node's stopped services; drain it meanwhile if it is balanced."""
    log.warning("cluster.reconcile: %s: starting %s", node, ", ".join(work["start"]))
    for name in work["start"]:
        client.cmd_async(node, "service.start", [name], tgt_type="list")
    if work["drain"] and directors:
        kwarg = {"nodes": [node], "admin_state": "drain", "for_service": True}
        client.cmd_async(directors, "balancer.set_nodes", [], tgt_type="list", kwarg=kwarg)


def service_drained(answers: Mapping) -> list[str]:
    """The nodes any director says it drained for a stopped service (pure;
    ``balancer.service_drained`` answers, a silent director's ignored)."""
    return sorted({n for a in answers.values() if isinstance(a, list) for n in a if isinstance(n, str)})


def connected(nodes: list[str], present: Any) -> list[str]:
    """Of ``nodes``, those whose minion is connected to this master
    (``present``; ``None`` when it could not be told: every node) (pure)."""
    if present is None:
        return list(nodes)
    return [n for n in nodes if n in present]


def node_addresses(nodes: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each topology node's interface addresses (pure)."""
    return {
        name: [i["address"] for i in _interfaces(spec) if isinstance(i.get("address"), str)]
        for name, spec in nodes.items()
    }


def at_addresses(addresses: Mapping[str, list[str]], peers: Any) -> set[str]:
    """The nodes with an address among ``peers``, the addresses connected to
    this master's publish port (pure)."""
    return {n for n, found in addresses.items() if any(a in peers for a in found)}


def _present(opts: Mapping, addresses: Mapping[str, list[str]]) -> Any:
    """The nodes connected to this master's publish port: those whose
    topology address is a peer of it, and those Salt's own presence check
    (``CkMinions.connected_ids``) finds by their cached grains, which a
    master has only of the minions that asked it for their pillar (a
    minion that failed over to it has not). None when the port's peers
    cannot be read."""
    try:
        peers = salt.utils.network.local_port_tcp(int(opts["publish_port"]))
    except Exception as err:  # whatever the failure: ask every node
        log.warning("cluster.reconcile: the publish port's peers are unknown (%s): asking every node", err)
        return None
    present = at_addresses(addresses, peers)
    if opts.get("minion_data_cache", True):
        present |= salt.utils.minions.CkMinions(opts).connected_ids()
    return present


def reconcile(timeout: int = 20, nodes: list[str] | None = None) -> dict:
    """
    The periodic check (the master's schedule runs it: etc/salt/master):
    every node is asked which of the services its beacon watches are running
    (``cluster.watched``); a stopped one is started, and a balanced node
    drained on every director meanwhile, as the reactor does on the beacon's
    event; the beacon's event when the service is back readies the node.
    It catches what no master heard: a service that stopped while its node's
    minion could reach no master (the beacon's event was lost with it). And
    a node drained for a stopped service (by either master: the directors
    keep it, ``balancer.service_drained``) whose services all run again is
    readied (the event saying so, or the reactor's check of it, was lost,
    or went to the other master); a drain an operator made is left alone.
    ``nodes``: only these of the topology's nodes. Only the minions
    connected to this master are asked: with failover masters each minion
    is connected to one, and waiting for the others made a run outlast the
    schedule's period (a run of a second master in the lab took 80 s and
    more, every other run was skipped, and a stopped Apache waited three
    minutes there).

    CLI example::

        salt-run cluster.reconcile
    """
    pillar = _master_pillar(__opts__["id"])  # noqa: F821
    topology = _topology(pillar)
    catalogue = pillar.get("catalogue") if isinstance(pillar.get("catalogue"), Mapping) else {}
    known = (topology.get("nodes") or {}) if isinstance(topology.get("nodes"), Mapping) else {}
    nodes = sorted(n for n in known if nodes is None or n in nodes)
    present = _present(__opts__, node_addresses({n: known[n] for n in nodes}))  # noqa: F821
    asked = connected(nodes, present)
    client = salt.client.get_local_client(__opts__["conf_file"])  # noqa: F821
    directors = connected(_directors(topology), present)
    answers: dict = {}
    todo: dict = {}
    # Each answer is acted on as it comes: a node that cannot answer (cut off
    # since its connection was seen) is waited for only after that, and no
    # longer than ``timeout`` again (a run within the schedule's period,
    # which skips a run while one is still going).
    replies = (
        client.cmd_iter(asked, "cluster.watched", [], tgt_type="list", timeout=timeout, gather_job_timeout=timeout)
        if asked
        else []
    )
    for reply in replies:
        for node, ret in (reply if isinstance(reply, Mapping) else {}).items():
            answers[node] = ret.get("ret") if isinstance(ret, Mapping) else None
            work = stopped_services({node: answers[node]}, topology, catalogue).get(node)
            if work:
                todo[node] = work
                _start_again(client, node, work, directors)
    # Nodes drained for a service that runs again, whose event saying so was lost.
    readied = []
    if directors:
        kept = client.cmd(directors, "balancer.service_drained", [], tgt_type="list", timeout=timeout)
        readied = ready_again(answers, service_drained(kept if isinstance(kept, Mapping) else {}), todo)
    for node in readied:
        log.warning("cluster.reconcile: %s: its services run again: ready", node)
        kwarg = {"nodes": [node], "admin_state": "ready"}
        client.cmd_async(directors, "balancer.set_nodes", [], tgt_type="list", kwarg=kwarg)
    silent = sorted(set(nodes) - {n for n, a in answers.items() if isinstance(a, Mapping)})
    return {"asked": len(asked), "silent": silent, "started": todo, "readied": readied}
