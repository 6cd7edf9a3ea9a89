"""
The host firewall's counters, whichever backend loaded it (the firewall
formula: nftables, or iptables where the kernel's nftables cannot filter IP).

Every rule of the formula carries a comment naming what it lets in (``ipvs
web``, ``salt master from the minions`` ...) and a counter; the last rule of
each chain, ``dropped``, counts what was refused. The parsers are pure
functions, tested on captured ``nft -j`` and ``iptables-save -c`` output.

CLI examples::

    salt-call firewall.counters
    salt -G roles:director firewall.dropped
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import Any

from salt.exceptions import CommandExecutionError

__virtualname__ = "firewall"
__load__ = ["counters", "dropped"]

TABLE = "cluster"  # the firewall formula's nftables table (firewall:table)
CHAINS = ("input", "forward")


def __virtual__():
    if shutil.which("nft") or shutil.which("iptables-save"):
        return __virtualname__
    return (False, "firewall: neither nft nor iptables-save is installed")


def parse_nft_json(text: str) -> dict[str, dict[str, dict[str, int]]]:
    """{chain: {comment: {packets, bytes}}} from ``nft -j list table inet cluster``
    (rules without a comment or a counter are left out; equal comments add up)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for item in json.loads(text).get("nftables", []):
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        counter = next((e["counter"] for e in rule.get("expr", []) if isinstance(e, dict) and "counter" in e), None)
        if counter is None:
            continue
        _add(out, rule["chain"].lower(), rule["comment"], counter["packets"], counter["bytes"])
    return out


_SAVED_RULE = re.compile(r'^\[(\d+):(\d+)\] -A (\S+) .*?--comment (?:"((?:[^"\\]|\\.)*)"|(\S+))')


def parse_iptables_save(text: str) -> dict[str, dict[str, dict[str, int]]]:
    """The same from ``iptables-save -c -t filter`` (one source or destination of
    a rule listing several becomes a rule of its own: they add up)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for line in text.splitlines():
        match = _SAVED_RULE.match(line)
        if match:
            packets, size, chain, quoted, bare = match.groups()
            _add(out, chain.lower(), quoted if quoted is not None else bare, int(packets), int(size))
    return out


def _add(out: dict, chain: str, comment: str, packets: int, size: int) -> None:
    entry = out.setdefault(chain, {}).setdefault(comment, {"packets": 0, "bytes": 0})
    entry["packets"] += packets
    entry["bytes"] += size


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def counters() -> dict[str, Any]:
    """
    Every rule's packet and byte counts, by chain and by the rule's comment,
    and which backend holds them.

    CLI Example:

    .. code-block:: bash

        salt -G roles:director firewall.counters
    """
    if shutil.which("nft"):
        listed = _run(["nft", "-j", "list", "table", "inet", TABLE])
        if listed.returncode == 0:
            return {"backend": "nftables", "chains": parse_nft_json(listed.stdout)}
    if shutil.which("iptables-save"):
        saved = _run(["iptables-save", "-c", "-t", "filter"])
        if saved.returncode == 0:
            chains = parse_iptables_save(saved.stdout)
            if chains:
                return {"backend": "iptables", "chains": chains}
    raise CommandExecutionError("no host firewall of the firewall formula is loaded (nftables table or iptables)")


def dropped() -> dict[str, int]:
    """
    Packets each chain of the host firewall refused (its ``dropped`` rule).

    CLI Example:

    .. code-block:: bash

        salt -G roles:director firewall.dropped
    """
    chains = counters()["chains"]
    return {chain: chains.get(chain, {}).get("dropped", {}).get("packets", 0) for chain in CHAINS}
