"""
Beacons that fire only when something changes, never every interval.

``cluster_watch`` watches, per its configuration:

- ``services``: systemd units; fires ``{kind: service, name, state, previous}``
  when a unit starts or stops (active while its cgroup has processes; e.g.
  apache2 active -> inactive).
- ``haproxy``: true to watch HAProxy's backend servers through the runtime
  socket; fires ``{kind: backend, backend, server, status, previous}`` on
  UP/DOWN/DRAIN/MAINT changes.
- ``vrrp``: true to watch keepalived's notified VRRP states; fires
  ``{kind: vrrp, name, state, previous}`` on MASTER/BACKUP/FAULT changes.
- ``backend``: true on nodes the directors balance to (web, dns): service
  events then carry ``backend: true`` and the reactor drains the node while
  its service is down. A director's own daemons are restarted, not drained.
  Service events also carry ``first``: true when a unit comes up for the
  first time since the minion started (a node's bring-up, nothing to undo).

The first poll records the current state without firing. What the beacon
saw is kept for the minion process's life in a file in the minion's cache
directory: Salt builds its beacons anew (an empty ``__context__``) on every
refresh of modules or pillar and on every change of master, and a change
made just before one (a service stopped as the minion moves to its other
master) would otherwise be lost, and the service's next start taken for a
first one.

.. code-block:: yaml

    beacons:
      cluster_watch:
        - interval: 1
        - services: [apache2]
        - haproxy: true
        - vrrp: true
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
from typing import Any

import salt.utils.atomicfile

log = logging.getLogger(__name__)

__virtualname__ = "cluster_watch"

CGROUP_SERVICES = "/sys/fs/cgroup/system.slice"


def __virtual__():
    return __virtualname__


def _config(config: list | dict) -> dict:
    if isinstance(config, dict):
        return config
    merged: dict = {}
    for item in config:
        merged.update(item)
    return merged


def validate(config):
    conf = _config(config)
    services = conf.get("services", [])
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        return False, "cluster_watch: 'services' must be a list of unit names"
    return True, "valid"


def diff(kind: str, key_fields: tuple[str, ...], before: dict, after: dict) -> list[dict[str, Any]]:
    """Events for the keys whose state changed (pure: the beacon's whole logic)."""
    events = []
    for key, state in after.items():
        previous = before.get(key)
        if previous is not None and previous != state:
            event = {"kind": kind, "state": state, "previous": previous}
            event.update(dict(zip(key_fields, key if isinstance(key, tuple) else (key,), strict=True)))
            events.append(event)
    return events


def _services(names: list[str]) -> dict[str, str]:
    """Each unit's state: ``active`` while its cgroup has processes, else
    ``inactive``. Read from cgroup v2 files (no process started: the beacon
    runs every second, and a fork is dear on a slow node); ``systemctl
    is-active`` where the unified hierarchy is not there."""
    if not names:
        return {}
    if os.path.isdir(CGROUP_SERVICES):
        return {name: _cgroup_state(name) for name in names}
    proc = subprocess.run(["systemctl", "is-active", *names], capture_output=True, text=True, check=False)
    states = proc.stdout.split()
    return dict(zip(names, states, strict=False))


def _cgroup_state(name: str) -> str:
    unit = name if "." in name else f"{name}.service"
    try:
        with open(os.path.join(CGROUP_SERVICES, unit, "cgroup.events"), encoding="ascii") as handle:
            return "active" if "populated 1" in handle.read() else "inactive"
    except FileNotFoundError:  # systemd removes a stopped or failed unit's cgroup
        return "inactive"


def _haproxy() -> dict[tuple[str, str], str]:
    try:
        # The socket: the minion's haproxy_runtime.socket option, else the
        # catalogue's (haproxy_runtime.socket_path).
        rows = __salt__["haproxy_runtime.servers"]()  # noqa: F821
    except Exception as err:  # no HAProxy yet, or a reload in progress: try again next interval
        log.debug("cluster_watch: HAProxy not readable: %s", err)
        return {}
    return {(row["backend"], row["server"]): row["status"].split()[0] for row in rows}


def _vrrp() -> dict[str, str]:
    return {name: data["state"] for name, data in __salt__["vip.vrrp_state"]().items()}  # noqa: F821


def beacon(config):
    conf = _config(config)
    services = _services(conf.get("services", []))
    watched = {"service": (("name",), services)}
    if conf.get("haproxy"):
        watched["backend"] = (("backend", "server"), _haproxy())
    if conf.get("vrrp"):
        watched["vrrp"] = (("name",), _vrrp())
    if "cluster_watch.seen_active" not in __context__:  # noqa: F821
        __context__.update(_kept())  # noqa: F821
    events = []
    for kind, (fields, now) in watched.items():
        before = __context__.get(f"cluster_watch.{kind}")  # noqa: F821
        if before is not None and now:
            events += diff(kind, fields, before, now)
        if now:
            __context__[f"cluster_watch.{kind}"] = now  # noqa: F821
    seen = __context__.setdefault("cluster_watch.seen_active", set())  # noqa: F821
    for event in events:
        event["tag"] = event["kind"]
        if event["kind"] == "service":
            event["backend"] = bool(conf.get("backend"))
            event["first"] = first_start(event, seen)
    seen.update(name for name, state in services.items() if state == "active")
    _keep()
    return events


# What ``beacon`` keeps in ``__context__``, by kind: whether its keys are
# tuples (HAProxy's backend and server), which JSON holds as lists.
KEPT = {"service": False, "backend": True, "vrrp": False}
KEPT_FILE = "cluster_watch.json"


@functools.cache
def _process() -> str:
    """This minion process, once in the life of the host: the boot's ID and
    the PID (a minion restarted, or the host rebooted, starts afresh). Read
    once per loading of the module, not at every poll."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            boot = handle.read().strip()
    except OSError:
        boot = "unknown"
    return f"{boot}/{os.getpid()}"


def _kept_path() -> str | None:
    cachedir = (globals().get("__opts__") or {}).get("cachedir")
    return os.path.join(cachedir, KEPT_FILE) if cachedir else None


def dump(context: dict, process: str) -> str:
    """The beacon's ``__context__`` as the kept file's text (pure)."""
    out: dict = {"process": process, "seen_active": sorted(context.get("cluster_watch.seen_active") or ())}
    for kind, tupled in KEPT.items():
        states = context.get(f"cluster_watch.{kind}")
        if states is not None:
            out[kind] = [[list(key) if tupled else key, state] for key, state in states.items()]
    return json.dumps(out, sort_keys=True)


def load(text: str, process: str) -> dict:
    """The ``__context__`` a kept file's text gives back, when this process
    wrote it; nothing otherwise (pure)."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict) or data.get("process") != process:
        return {}
    out: dict = {"cluster_watch.seen_active": {s for s in data.get("seen_active") or () if isinstance(s, str)}}
    for kind, tupled in KEPT.items():
        if isinstance(data.get(kind), list):
            out[f"cluster_watch.{kind}"] = {
                (tuple(key) if tupled else key): state for key, state in data[kind] if isinstance(state, str)
            }
    return out


def _kept() -> dict:
    """What this minion process's beacon saw before Salt built it anew."""
    path = _kept_path()
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            return load(handle.read(), _process())
    except OSError:
        return {}


def _keep() -> None:
    """Write ``__context__`` to the kept file when it changed (atomically)."""
    path = _kept_path()
    if not path:
        return
    text = dump(__context__, _process())  # noqa: F821
    if __context__.get("cluster_watch.kept") == text:  # noqa: F821
        return
    try:
        with salt.utils.atomicfile.atomic_open(path, "w") as handle:
            handle.write(text)
    except OSError as err:
        log.warning("cluster_watch: cannot keep what it saw in %s: %s", path, err)
        return
    __context__["cluster_watch.kept"] = text  # noqa: F821


def first_start(event: dict, seen_active: set[str]) -> bool:
    """A service event is a first start when the unit comes up and was never
    seen active since the minion started: a node coming up, not one coming
    back (pure). The reactor then leaves the balancers alone (a first start
    has no drain to undo, and should not undo an operator's)."""
    return event["state"] == "active" and event["name"] not in seen_active
