"""The docroot without its nas: the site through a long nas cut, and publishing.

The web servers serve their own copies of the nas's export (the topology's
``nfs.copy``; the apache formula refreshes them every ``refresh`` seconds).
The drill cuts the nas's cables for ``hold`` seconds while the external
client probes the site through the VIP (lab/probe.py), publishes a file on
the nas meanwhile (written into its export, as an operator on the nas would),
heals, and times how long the file takes to reach every web server's copy.
Early in the cut it stops Apache on a web server (``systemctl stop``, which
systemd does not undo): the beacon's event is lost with the master on the
nas (unless the topology has a second one), so the periodic check must find
it and start it once a master hears.

The disk loss drill (``disk_loss_drill``) publishes a small tree on the
nas, waits until every copy has it, takes every file's checksum on the nas,
throws the nas's disk away (``python -m lab wipe``) and boots it anew
(``python -m lab up``: the nas's highstate restores the docroot from a web
server's copy) under probes, then compares every checksum and publishes once
more, which every copy must take (the restored export is the docroot they
came from).

Reported: probes sent and failed (and failed when retried once) per kind;
``back_in_rotation_s``, seconds from the stop command until the web server
answered through the VIP again (None: not within ``BACK_LIMIT_S`` of the
heal), ``back_after_heal_s`` (0: during the cut); and
``published_s``, seconds from the heal until every copy held the file with the
checksum taken on the nas (None: not within the limit).
"""

from __future__ import annotations

import subprocess
import sys
import time

from lab import catalogue, node
from lab.topology import REPO
from lab.util import log

DRILL = "nas cut"
DISK_LOSS = "nas disk loss"
# The tree the disk loss drill publishes before the loss: (path, bytes).
DISK_LOSS_FILES = (("disk-drill/a.txt", 2048), ("disk-drill/sub/b.txt", 65536), ("disk-drill/sub/deeper/c.txt", 10))
# The nas stays cut this long: longer than the web servers' NFS clients can
# hide (they answered for about 36 s from their caches when Apache served the
# mount itself).
HOLD_S = 120
PUBLISHED_FILE = "nas-drill.txt"
SERVICE = catalogue.service_of("web")
# How long after the heal a published file may take to reach every copy
# before the drill stops waiting.
PUBLISH_LIMIT_S = 120
# How long after the heal the stopped web server may take to be back.
BACK_LIMIT_S = 150
# How often the drill looks whether it is: each look runs systemctl on a
# user-mode web server, whose CPU is the host's, and the probes through the
# directors share it (five looks a second through a whole cut made them
# time out).
BACK_POLL_S = 1.0
# The nas drills' probe interval. They last minutes (a rebuild up to five),
# where the failover drills' 10 ms interval (lab.bench.PROBE_INTERVAL, for
# outages of a fraction of a second) kept HAProxy on the user-mode director
# at 58 % of its CPU and starved the nas being rebuilt; 50 ms still sends
# ten HTTP requests a second, four times the 0.2 s.
PROBE_INTERVAL_S = 0.05


def export_dir(model: dict) -> str:
    """The docroot as the nas holds it, in its export."""
    return model["nfs"]["export_docroot"]


def served_dir(model: dict) -> str:
    """Where the web servers serve the docroot from (their copy, or the mount)."""
    return model["nfs"]["serve_root"]


def publish(cluster, name: str, size: int = 4096) -> str:
    """Random bytes written on the nas as ``name`` in the docroot (atomically:
    a temporary dot file, then renamed); their SHA-256, taken there."""
    path = f"{export_dir(cluster.model)}/{name}"
    script = (
        f"head -c {size} /dev/urandom | base64 > {path}.tmp && chmod 644 {path}.tmp"
        f" && mv {path}.tmp {path} && sha256sum {path}"
    )
    out = node.execute(cluster.role("nas")[0], ["sh", "-c", script], timeout=60, check=True).stdout
    return out.split()[0]


def unpublish(cluster, name: str) -> None:
    node.execute(cluster.role("nas")[0], ["rm", "-f", f"{export_dir(cluster.model)}/{name}"], timeout=60, check=True)


def lacking(cluster, name: str, sha256: str) -> list[str]:
    """The web servers whose served docroot does not hold ``name`` with ``sha256``."""
    path = f"{served_dir(cluster.model)}/{name}"
    out = []
    for web in cluster.role("web"):
        proc = node.execute(web, ["sha256sum", path], timeout=30)
        if proc.returncode != 0 or proc.stdout.split()[:1] != [sha256]:
            out.append(web)
    return out


def wait_published(cluster, name: str, sha256: str, limit: float = PUBLISH_LIMIT_S) -> float | None:
    """Seconds until every web server serves ``name`` as written (None: not within ``limit``)."""
    from lab.bench import wait_for

    return wait_for(lambda: not lacking(cluster, name, sha256), limit)


def nas_drill(cluster, hold: float) -> dict:
    """Cut the nas for ``hold`` seconds under probes; publish during the cut."""
    from lab.bench import answering, wait_for, wait_serving

    nas = cluster.role("nas")[0]
    web = cluster.role("web")[1]
    wait_serving(cluster)
    probe = _probe(cluster)
    published_s = None
    try:
        time.sleep(2)  # a baseline before the fault
        injected = time.time()
        cluster.cut(nas)
        # A web server's Apache stopped while the nas (and the Salt master
        # on it) is out: its beacon's event is lost with the master.
        time.sleep(min(10.0, hold / 4))
        stopping = time.monotonic()
        node.execute(web, ["systemctl", "stop", SERVICE], timeout=60, check=True)

        def back() -> bool:
            active = node.execute(web, ["systemctl", "is-active", SERVICE], timeout=30).stdout.strip() == "active"
            return active and web in answering(cluster, 3)

        def back_by(limit_at: float) -> float | None:
            """Seconds from the stop command until it is back, looked for
            until ``limit_at`` (epoch seconds); None if it is not."""
            found = wait_for(back, max(1.0, limit_at - time.time()), BACK_POLL_S)
            return None if found is None else time.monotonic() - stopping

        back_s = back_by(injected + hold / 2)
        time.sleep(max(0.0, injected + hold / 2 - time.time()))
        sha256 = publish(cluster, PUBLISHED_FILE)
        if back_s is None:  # still looked for in the cut's second half
            back_s = back_by(injected + hold)
        time.sleep(max(0.0, injected + hold - time.time()))
        # During the whole cut no copy could have it.
        during = lacking(cluster, PUBLISHED_FILE, sha256)
        healed = time.time()
        cluster.cut(nas, up=True)
        published_s = wait_published(cluster, PUBLISHED_FILE, sha256)
        back_after_heal_s = 0.0 if back_s is not None else None
        if back_s is None:
            back_s = back_by(healed + BACK_LIMIT_S)
            if back_s is not None:
                back_after_heal_s = time.time() - healed
        time.sleep(2)  # the probe sees the healed state too
    finally:
        probes = probe.stop()
        cluster.cut(nas, up=True)
        unpublish(cluster, PUBLISHED_FILE)
    row: dict = {
        "name": DRILL,
        "hold_s": hold,
        "probes": sum(1 for p in probes if p[0] in ("http", "l7")),
        "lacking_during_cut": during,
        "stopped": f"{SERVICE} on {web}",
        "back_in_rotation_s": None if back_s is None else round(back_s, 2),
        "back_after_heal_s": None if back_after_heal_s is None else round(back_after_heal_s, 2),
        "published_s": None if published_s is None else round(published_s, 2),
        "refresh_s": cluster.model["nfs"]["copy"]["refresh"] if cluster.model["nfs"]["copy"] else None,
        "injected_at": injected,
        "healed_at": healed,
    }
    row.update(probe_outages(probes))
    row.update({k: row["http"][k] for k in ("outage_s", "failed", "failed_retry_once")})
    log(
        "bench",
        f"drill nas cut ({hold:.0f} s): {row['probes']} HTTP probes, failed retrying once:"
        f" http {row['http']['failed_retry_once']}, l7 {row['l7']['failed_retry_once']},"
        f" dns {row['dns']['failed_retry_once']}; {SERVICE} stopped on {web} back in rotation after"
        f" {row['back_in_rotation_s']} s ({row['back_after_heal_s']} s after the heal);"
        f" published on every copy {row['published_s']} s after the heal",
    )
    return row


def _probe(cluster):
    """The nas drills' probe through the VIP (lab.bench.Probe), every
    PROBE_INTERVAL_S, started."""
    from lab.bench import PROBE_TIMEOUT_S, Probe

    name = f"{cluster.role('web')[0]}.{cluster.model['domain']}"
    return Probe(cluster.vip, cluster.l7_port, name, interval=PROBE_INTERVAL_S, timeout=PROBE_TIMEOUT_S)


def probe_outages(probes: list[list]) -> dict:
    """Each kind's outages in the probe's results (lab.bench.outages; DNS is
    probed every interval, each HTTP kind every other), and the probes that
    failed even when retried once, all kinds together."""
    from lab.bench import outages

    out: dict = {
        kind: outages(probes, kind, interval=PROBE_INTERVAL_S if kind == "dns" else 2 * PROBE_INTERVAL_S)
        for kind in ("http", "l7", "dns")
    }
    out["failed_retry_once_all"] = sum(out[kind]["failed_retry_once"] for kind in ("http", "l7", "dns"))
    return out


def checksums(cluster, where: str, root: str) -> dict[str, str]:
    """SHA-256 of every file below ``root`` on node ``where``, by relative path."""
    script = f"cd {root} && find . -type f -print0 | sort -z | xargs -0 -r sha256sum"
    out = node.execute(where, ["sh", "-c", script], timeout=120, check=True).stdout
    return {path.removeprefix("./"): digest for digest, path in (line.split(None, 1) for line in out.splitlines())}


def _lab(*argv: str, timeout: float = 900) -> None:
    """The lab's CLI, as an operator runs it."""
    argv = (sys.executable, "-m", "lab", *argv)
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def disk_loss_drill(cluster) -> dict:
    """The nas's disk thrown away and the nas rebuilt through Salt, under probes."""
    from lab.bench import wait_serving

    nas = cluster.role("nas")[0]
    export = export_dir(cluster.model)
    wait_serving(cluster)
    for name, size in DISK_LOSS_FILES:
        parent = f"{export}/{name}".rsplit("/", 1)[0]
        node.execute(nas, ["mkdir", "-p", "-m", "755", parent], timeout=60, check=True)
        sha256 = publish(cluster, name, size)
    last = DISK_LOSS_FILES[-1][0]
    copied_s = wait_published(cluster, last, sha256)
    before = checksums(cluster, nas, export)
    probe = _probe(cluster)
    try:
        time.sleep(2)  # a baseline before the fault
        injected = time.time()
        _lab("wipe", nas)
        _lab("up")
        rebuilt_s = time.time() - injected
        after = checksums(cluster, nas, export)
        sha256 = publish(cluster, PUBLISHED_FILE)
        published_s = wait_published(cluster, PUBLISHED_FILE, sha256)
        time.sleep(2)  # the probe sees the rebuilt state too
    finally:
        probes = probe.stop()
    unpublish(cluster, PUBLISHED_FILE)
    node.execute(nas, ["rm", "-rf", f"{export}/disk-drill"], timeout=60)
    differing = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    row: dict = {
        "name": DISK_LOSS,
        "files": len(before),
        "copied_before_s": None if copied_s is None else round(copied_s, 2),
        "rebuilt_s": round(rebuilt_s, 1),
        "restored_files": len(after),
        "differing": differing,
        "published_s": None if published_s is None else round(published_s, 2),
        "probes": sum(1 for p in probes if p[0] in ("http", "l7")),
        "injected_at": injected,
    }
    row.update(probe_outages(probes))
    log(
        "bench",
        f"drill nas disk loss: rebuilt in {row['rebuilt_s']} s; {row['restored_files']} of {row['files']} files"
        f" restored, {len(differing)} differing; published on every copy {row['published_s']} s after;"
        f" {row['probes']} HTTP probes, {row['failed_retry_once_all']} failed retrying once",
    )
    return row
