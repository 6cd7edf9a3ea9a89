"""The lab's Salt control: the salt CLI where the master runs, waiting for
minions, highstates and their reports (the whole answers kept in the logs)."""

from __future__ import annotations

import json
import subprocess
import time

from lab import node, provision
from lab.topology import LabNode
from lab.util import log, salt_returns

# What the lab prints when a first highstate failed and it applies it once more.
RETRY_NOTE = "highstate again, once, after the failure above"


class SaltControl:
    """Salt through the lab's master; the Lab (lab/cli.py) gives it `nodes`,
    `master`, and the sets `heard` and `applied`."""

    nodes: dict[str, LabNode]
    master: LabNode
    heard: set[str]
    applied: set[str]

    def minions(self) -> list[LabNode]:
        return [n for n in self.nodes.values() if n.minion]

    def salt_json(self, *args: str, timeout: float = 300) -> dict:
        """The salt CLI where the master runs: the minions' returns (lab.util.salt_returns)."""
        proc = node.execute(self.master.name, ["salt", "--out=json", *args], timeout=timeout)
        return salt_returns(proc.stdout)

    def ping(self, names: list[str], timeout: float = 90) -> dict[str, bool]:
        """Wait until every named minion answers test.ping (or the timeout).

        Each round asks only the minions still silent, and gives them time to
        answer: every ping is a job, and a busy user-mode node flooded with
        jobs answers none of them."""
        deadline = time.monotonic() + timeout
        # At most half the time: should a minion's connection never match
        # its addresses (a route through another source address), the pings
        # still go out.
        self._wait_connected(names, time.monotonic() + timeout / 2)
        answered = dict.fromkeys(names, False)
        while time.monotonic() < deadline:
            silent = [n for n, ok in answered.items() if not ok]
            if not silent:
                break
            wait = max(5, min(20, int(deadline - time.monotonic())))
            try:
                result = self.salt_json("-L", ",".join(silent), "test.ping", "-t", str(wait), timeout=wait + 60)
            except subprocess.TimeoutExpired:
                # The CLI itself hung (seen once, right after the nas and its
                # master were rebuilt): that round heard nobody; ask again.
                log("salt", f"test.ping to {', '.join(silent)} did not return within {wait + 60} s")
                result = {}
            answered.update({n: True for n in silent if result.get(n) is True})
            if not all(answered.values()):
                time.sleep(1)
        return answered

    def _wait_connected(self, names: list[str], deadline: float) -> None:
        """Until these minions hold a connection to the master's publish port
        (no job). A ping published before a minion is connected is lost, and
        its round waits out the whole timeout. Read with `ss` where the master
        runs: a `salt-run manage.present` every 2 s cost the master's node
        a second of CPU each, while the minions it waited for were starting."""
        argv = ["ss", "-Htn", "state", "established", f"( sport = :{provision.PUBLISH_PORT} )"]
        while time.monotonic() < deadline:
            proc = node.execute(self.master.name, argv, timeout=30)
            if provision.connected_minions(proc.stdout, self.nodes) >= set(names):
                return
            time.sleep(1)

    def _log_answers(self, names: list[str], timeout: float = 90) -> None:
        """Wait for these minions to answer (or fail naming the silent ones), and say so."""
        if names:
            log("salt", "minions answering: " + ", ".join(self._require_answers(names, timeout)))

    def _require_answers(self, names: list[str], timeout: float) -> dict[str, bool]:
        """ping, and fail naming the minions that did not answer."""
        answered = self.ping(names, timeout=timeout)
        missing = [n for n, ok in answered.items() if not ok]
        if missing:
            raise RuntimeError(f"minions did not answer: {', '.join(missing)}")
        return answered

    def apply_states(self, *target: str, test: bool = False, sls: str | None = None) -> dict[str, dict]:
        """Highstate (or these sls) through the master; per minion: states, failed, changed (or pending, with test)."""
        target = target or ("*",)
        extra = ([sls] if sls else []) + (["test=True"] if test else [])
        result = self.salt_json(*target, "state.apply", *extra, "-t", "600", timeout=900)
        self.heard |= {minion for minion, states in result.items() if isinstance(states, dict)}
        self._keep_answer(result, target, sls, test)
        return summarize(result)

    @staticmethod
    def _keep_answer(result: dict, target: tuple[str, ...], sls: str | None, test: bool, keep: int = 20) -> None:
        """The whole answer (every state's comment and duration) in the lab's
        logs, state.apply-*.json, the last `keep` of them."""
        logs = node.STATE / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        seconds, nanoseconds = divmod(time.time_ns(), 10**9)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(seconds)) + f".{nanoseconds:09d}"
        (logs / f"state.apply-{stamp}-{'test' if test else 'run'}.json").write_text(
            json.dumps({"target": list(target), "sls": sls, "test": test, "result": result}, indent=1)
        )
        for old in sorted(logs.glob("state.apply-*.json"))[:-keep]:
            old.unlink(missing_ok=True)

    def _report(self, summary: dict[str, dict]) -> bool:
        ok = True
        for minion, s in sorted(summary.items()):
            log(minion, f"{s['states']} states, {s['changed']} changed, {s['failed']} failed")
            for error in s["errors"] or []:
                log(minion, f"  {str(error)[:400]}")
            for unit in s.get("units", []):
                self._log_journal(minion, unit)
            ok = ok and s["failed"] == 0
        return ok

    def _apply_failed_again(self, summary: dict[str, dict]) -> bool:
        """Once more on the minions whose first highstate failed (reported above,
        with the failed units' journals). A unit that died at its very first
        start starts again (the project's CI once saw HAProxy do so on the
        standby: its watchdog, docs/lab.md "HAProxy's size"); a real fault fails
        again, and the lab stops. The line it prints is what the test session
        warns about."""
        failed = sorted(m for m, s in summary.items() if s["failed"])
        log("salt", f"{RETRY_NOTE} on {', '.join(failed)}")
        return self._report(self.apply_states("-L", ",".join(failed)))

    def _log_journal(self, name: str, unit: str, lines: int = 15) -> None:
        """A failed service state's unit: its last journal lines from the node
        (why it failed or exited: the state's comment does not say)."""
        argv = ["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "short-monotonic"]
        try:
            proc = node.execute(name, argv, timeout=30)
        except (RuntimeError, subprocess.SubprocessError) as err:
            log(name, f"  journal of {unit}: not read ({err})")
            return
        log(name, f"  journal of {unit} (last {lines} lines):")
        for line in proc.stdout.splitlines():
            log(name, f"    {line}")

    def apply(self, skip_applied: bool = False) -> bool:
        """Highstate every minion (with skip_applied: those up did not just apply)."""
        skip = self.applied if skip_applied else set()
        names = sorted(n.name for n in self.minions() if n.name not in skip)
        if not names:
            log("salt", "every minion was highstated while coming up")
            return True
        # Lab minions do not sync at each highstate (provision.minion_conf):
        # the repo's custom modules may have changed since they booted.
        log("salt", "saltutil.sync_all on " + ", ".join(names))
        self.salt_json("-L", ",".join(names), "saltutil.sync_all", "-t", "240", timeout=300)
        if skip:
            log("salt", "highstate on " + ", ".join(names) + " (the others were applied while coming up)")
            summary = self.apply_states("-L", ",".join(names))
        else:
            summary = self.apply_states()
        missing = sorted(set(names) - set(summary))
        for name in missing:
            log(name, "no answer to state.apply")
        return self._report(summary) and not missing


def summarize(result: dict) -> dict[str, dict]:
    """Per minion of a state.apply answer: how many states, failed, changed (or
    pending, with test=True), the failed ones' comments, and the units of the
    failed service states (pure)."""
    summary: dict[str, dict] = {}
    for minion, states in result.items():
        if not isinstance(states, dict):
            summary[minion] = {"states": 0, "failed": 1, "changed": 0, "errors": states, "units": []}
            continue
        failed = {k: v for k, v in states.items() if v.get("result") is False}
        summary[minion] = {
            "states": len(states),
            "failed": len(failed),
            "changed": sum(1 for v in states.values() if v.get("changes") or v.get("result") is None),
            "errors": [v.get("comment") for v in failed.values()],
            # A state's key: module_|-id_|-name_|-function.
            "units": [v.get("name") or k.split("_|-")[2] for k, v in failed.items() if k.startswith("service_|-")],
        }
    return summary
