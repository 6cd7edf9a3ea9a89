"""A property of validation: whatever `cluster.validate` accepts renders.

The seed topology, mutated at random (seeded, so every run sees the same
cases): keys deleted, values swapped for other types, entries duplicated,
sections emptied, one to three times. For each case either validation names
problems, or the model derives, every node's view builds and (for a sample,
through Salt itself) every file template of every role renders.
"""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml

import cluster  # _modules/, on the path by conftest
from conftest import REPO, SEED

CASES = 1000
RENDERED = 2  # accepted cases rendered through Salt, one node per role each
SWAPS: list[Any] = [None, 0, -1, 1.5, "", "x", "0.0.0.0/0", [], {}, True, ["x"], {"x": 1}, 65536, "10.0.100.2"]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


def mutated(seed: int) -> tuple[dict, list[str]]:
    """The seed topology after 1-3 random mutations, and what they were."""
    rng = random.Random(seed)
    topology, done = copy.deepcopy(SEED), []
    for _ in range(rng.randint(1, 3)):
        paths = _paths(topology)
        if not paths:
            break
        path = rng.choice(paths)
        parent = topology
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        operation = rng.choice(["delete", "swap", "duplicate", "empty"])
        if operation == "delete":
            del parent[key]
        elif operation == "swap":
            parent[key] = copy.deepcopy(rng.choice(SWAPS))
        elif operation == "duplicate" and isinstance(parent, dict):
            parent[f"{key}x"] = copy.deepcopy(parent[key])
        elif operation == "duplicate":
            parent.append(copy.deepcopy(parent[key]))
        else:
            value = parent[key]
            parent[key] = type(value)() if isinstance(value, (dict, list, str)) else None
        done.append(f"{operation} {'.'.join(map(str, path))}")
    return topology, done


def accepted_cases() -> list[tuple[int, dict, list[str]]]:
    cases = [(seed, *mutated(seed)) for seed in range(CASES)]
    return [(seed, topology, done) for seed, topology, done in cases if not cluster.check(topology)]


def test_whatever_validation_accepts_derives_for_every_node():
    crashes, accepted = [], 0
    for seed in range(CASES):
        topology, done = mutated(seed)
        try:
            if cluster.check(topology):
                continue
        except Exception as exc:
            crashes.append((seed, done, f"check: {exc!r}"))
            continue
        accepted += 1
        try:
            model = cluster.derive(topology)
            for name in model["nodes"]:
                cluster.node_view(model, name)
        except Exception as exc:
            crashes.append((seed, done, f"derive: {exc!r}"))
    assert crashes == [], crashes[:5]
    # Enough of the cases pass validation for the property to mean something.
    assert accepted >= 50, accepted


def test_accepted_mutations_render_every_template_through_salt(salt_call):
    """Every file template of the highstate of one node per role, rendered by
    Salt's own file.get_managed (tests/render_all.py)."""
    sample = accepted_cases()[:RENDERED]
    assert len(sample) == RENDERED
    jobs = []
    for seed, topology, done in sample:
        pillar = salt_call.pillar(topology)
        assert yaml.safe_load((pillar / "cluster.sls").read_text())["cluster"] == topology
        for role in cluster.ROLES:
            node = next(name for name, spec in sorted(topology["nodes"].items()) if role in spec["roles"])
            jobs.append((seed, done, node, salt_call.config(node, topology["nodes"][node]["roles"], pillar)))

    def render(conf) -> dict:
        proc = subprocess.run(
            [sys.executable, str(REPO / "tests" / "render_all.py"), str(conf)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.splitlines()[-1])

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(render, [conf for *_, conf in jobs]))
    for (seed, done, node, _), rendered in zip(jobs, results, strict=True):
        assert rendered and set(rendered.values()) == {"ok"}, (seed, done, node, rendered)
