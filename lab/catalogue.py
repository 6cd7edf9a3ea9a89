"""The catalogue of roles (pillar/catalogue.sls), as the lab and the tests read it.

The formulas, the beacons' pillar and the execution modules read the same
file through Salt; this module only answers the lab's questions about it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PATH = Path(__file__).resolve().parent.parent / "pillar" / "catalogue.sls"


@cache
def load(path: Path = PATH) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["catalogue"]


def _entries(entry: Mapping) -> Iterator[Mapping]:
    """A formula's entry and the alternatives nested in it (the firewall's iptables)."""
    yield entry
    for value in entry.values():
        if isinstance(value, Mapping):
            yield from _entries(value)


def formulas(role: str, catalogue: Mapping | None = None) -> list[str]:
    """The formulas (top.sls entries) a role runs."""
    return list((catalogue or load())["roles"][role]["formulas"])


def formula(name: str, catalogue: Mapping | None = None) -> Mapping:
    """A formula's entry; ``name`` may be an SLS (``nfs.server``)."""
    return (catalogue or load())["formulas"].get(name.split(".")[0], {})


def packages(catalogue: Mapping | None = None) -> list[str]:
    """Every Debian package any formula installs, in the catalogue's order."""
    out: list[str] = []
    for entry in (catalogue or load())["formulas"].values():
        for part in _entries(entry):
            out += [p for p in part.get("packages", []) if p not in out]
    return out


def units(catalogue: Mapping | None = None) -> list[str]:
    """Every Debian service unit a formula runs (not those the formulas make)."""
    return [e["service"] for e in (catalogue or load())["formulas"].values() if "service" in e]


def services(role: str, catalogue: Mapping | None = None) -> list[str]:
    """The daemons a role runs, in its formulas' order: what its packages
    leave enabled on a Debian server, and what its beacon watches."""
    out: list[str] = []
    for name in formulas(role, catalogue):
        entry = formula(name, catalogue)
        if "service" in entry and not entry.get("oneshot") and entry["service"] not in out:
            out.append(entry["service"])
    return out


def service_of(role: str, catalogue: Mapping | None = None) -> str:
    """The daemon a server role serves with (web: apache2, dns: named): its
    first formula's; the formulas after it (the exporter) serve no client."""
    return services(role, catalogue)[0]


def runtime(name: str, key: str, catalogue: Mapping | None = None) -> str:
    """A formula's runtime path that others read (haproxy: socket, ...)."""
    return formula(name, catalogue)[key]


def server_prefix(catalogue: Mapping | None = None) -> str:
    """What the index page prints before the serving node's address."""
    return runtime("webcontent", "server_address_prefix", catalogue)
