"""The one-host lab's command line: `python -m lab up|apply|verify|status|exec|salt|cut|heal|bench|events|down|lab`.

Bring-up and take-down are lab/bringup.py's, Salt control lab/salt_control.py's,
the checks lab/checks.py's, the node backends lab/node.py's."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from lab import bench, events, kernel, net, node
from lab.bringup import Bringup
from lab.checks import Checks
from lab.topology import OPERATOR, REPO, load, place_on_kernels
from lab.util import log


class Lab(Bringup, Checks):
    """The lab of the topology in pillar/cluster.sls, as this host runs it."""

    def __init__(self, bare: bool | None = None) -> None:
        self.topology, self.model, nodes = load()
        # A bare lab: nodes without Salt, for tools/bootstrap.py (`up --bare`).
        self.bare = node.bare_mode() if bare is None else bare
        if self.bare:
            nodes[OPERATOR].extra["checkout"] = True
        # IPVS and NFS: the host kernel's, or the nodes that need them boot a user-mode kernel.
        self.kernel_paths = kernel.paths()
        self.nodes = place_on_kernels(nodes, kernel.uml_roles(self.kernel_paths), bare=self.bare)
        self.nas = next(n for n in self.nodes.values() if "nas" in n.roles)
        self.master = next(n for n in self.nodes.values() if n.runs_master)
        self.boot_seconds: dict[str, float] = {}
        # Minions highstated without failure by this process (up's first wave).
        self.applied: set[str] = set()
        # Minions that returned a job to this process: they answer.
        self.heard: set[str] = set()
        self.repo_master = yaml.safe_load((REPO / "etc" / "salt" / "master").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("apply", "verify", "status", "down", "lab"):
        sub.add_parser(name)
    p_up = sub.add_parser("up", help="boot the lab (--bare: nodes without Salt, for `bootstrap`)")
    p_up.add_argument("--bare", action="store_true")
    p_boot = sub.add_parser("bootstrap", help="a bare lab: tools/bootstrap.py from the operator node")
    p_boot.add_argument("--only", help="comma-separated nodes (tools/bootstrap.py --only)")
    p_exec = sub.add_parser("exec", help="run a command in a node: exec NODE -- CMD...")
    p_exec.add_argument("node")
    p_exec.add_argument("argv", nargs=argparse.REMAINDER)
    p_salt = sub.add_parser("salt", help="the salt CLI where the master runs")
    p_salt.add_argument("argv", nargs=argparse.REMAINDER)
    for name in ("cut", "heal"):
        p = sub.add_parser(name)
        p.add_argument("node")
    p_wipe = sub.add_parser("wipe", help="throw a node's disk away (stopped); `up` boots it anew and highstates it")
    p_wipe.add_argument("node")
    p_bench = sub.add_parser("bench", help="benchmarks and failure drills from the client node (lab/bench/)")
    p_bench.add_argument("--quick", action="store_true", help="a short bounded run (about a minute)")
    p_bench.add_argument("--out", type=Path, default=REPO / "build" / "bench", help="results, plots and report")
    p_bench.add_argument(
        "--drills",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help="only these drills, comma-separated (no sweeps), e.g. 'director cable cut'",
    )
    p_events = sub.add_parser("events", help="print the master's events matching a tag (salt-run state.event)")
    p_events.add_argument("tagmatch")
    p_events.add_argument("--count", type=int)
    p_events.add_argument("--timeout", type=float, default=30)
    argv = sys.argv[1:] if argv is None else argv
    # Everything after `salt` belongs to the salt CLI, its options included.
    salt_cli = argv[:1] == ["salt"]
    args = argparse.Namespace(command="salt", argv=argv[1:]) if salt_cli else parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the lab needs root (namespaces, mounts, containers)", file=sys.stderr)
        return 2
    try:
        return run_command(parser, args)
    except (RuntimeError, TimeoutError, ValueError) as err:
        print(f"lab: error: {err}", file=sys.stderr)
        return 1


def _exec(target: str, argv: list[str]) -> int:
    """Run ``argv`` in the node ``target``, its output and exit code passed through."""
    if node.backend(target) is node.USER_MODE:
        # Another kernel: no nsenter; the node's exec agent runs it (stdin is passed along).
        stdin = "" if sys.stdin.isatty() else sys.stdin.read()
        proc = node.execute(target, argv, timeout=float(os.environ.get("LAB_EXEC_TIMEOUT", 600)), stdin=stdin)
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        return proc.returncode
    os.execvp("nsenter", node.exec_argv(target, argv))


def _exec_command(parser: argparse.ArgumentParser, args: argparse.Namespace, master: str) -> int:
    """`exec NODE -- CMD...` in that node, or `salt ...` where the master runs."""
    if args.command == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        target = args.node
    else:
        argv = ["salt", *[a for a in args.argv if a != "--"]]
        target = master
    if not argv:
        parser.error("nothing to run")
    return _exec(target, argv)


def run_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        bare = None
        if args.command in ("up", "lab"):
            wanted = args.command == "up" and args.bare
            running = node.load_state()
            if running and bool(running.get("bare")) != wanted:
                parser.error(
                    f"the lab runs {'bare' if running.get('bare') else 'provisioned'}: `python -m lab down` first"
                )
            other = node.other_checkout(running, REPO)
            if other:
                # Its master serves that checkout's states: this one's would not be the ones tested.
                parser.error(f"the lab runs from {other}: `python -m lab down` first")
            bare = wanted
        lab = Lab(bare)
    except ValueError as err:
        # An invalid topology: the running lab still takes commands (to see
        # Salt refuse the edit, say), its nodes found by name.
        running = node.load_state().get("master")
        if args.command not in ("exec", "salt") or not running:
            raise
        log("lab", f"the topology is invalid, the running lab is used as it is: {str(err).splitlines()[0]}")
        return _exec_command(parser, args, running)
    if args.command == "up" and lab.bare:
        node.STATE.mkdir(parents=True, exist_ok=True)
        node.mode_file().write_text("bare\n")
        lab.up_bare()
    elif args.command == "up":
        lab.up()
    elif args.command == "bootstrap":
        if not lab.bare:
            parser.error("bootstrap is for a bare lab: `python -m lab down`, then `python -m lab up --bare`")
        return lab.bootstrap(args.only)
    elif args.command == "apply":
        return 0 if lab.apply() else 1
    elif args.command == "verify":
        return 0 if lab.verify() else 1
    elif args.command == "status":
        lab.status()
    elif args.command == "down":
        lab.down()
    elif args.command == "lab":
        lab.up(apply_servers=True)
        applied = lab.apply(skip_applied=True)
        # Each minion's highstate result was just reported; a second one
        # (idempotence) is `verify`'s and make test's, not the build's.
        verified = lab.verify(second_highstate=False)
        print()
        lab.status()
        return 0 if applied and verified else 1
    elif args.command == "bench":
        unknown = sorted(set(args.drills or ()) - set(bench.DRILLS))
        if unknown:
            parser.error(f"--drills: unknown {', '.join(map(repr, unknown))} (drills: {', '.join(bench.DRILLS)})")
        ipvs = lab.kernel_paths["ipvs"].path != "unavailable"
        cluster = bench.Cluster(lab.model, lab.nodes, lab.master.name, ipvs)
        bench.run_bench(cluster, args.quick, args.out, args.drills)
    elif args.command == "events":
        argv = events.salt_run_argv(args.tagmatch, args.count, args.timeout)
        proc = node.execute(lab.master.name, argv, timeout=args.timeout + 10)
        sys.stdout.write(proc.stdout)
        return 0 if proc.returncode in (0, 124) else proc.returncode
    elif args.command in ("exec", "salt"):
        return _exec_command(parser, args, lab.master.name)
    elif args.command == "wipe":
        if args.node not in lab.nodes:
            parser.error(f"unknown node {args.node!r} (nodes: {', '.join(sorted(lab.nodes))})")
        lab.wipe(args.node)
    elif args.command in ("cut", "heal"):
        if args.node not in lab.nodes:
            parser.error(f"unknown node {args.node!r} (nodes: {', '.join(sorted(lab.nodes))})")
        net.set_links(lab.nodes[args.node], up=args.command == "heal")
        log(args.node, "links " + ("up" if args.command == "heal" else "down (cut)"))
    return 0
