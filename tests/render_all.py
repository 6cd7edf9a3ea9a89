"""Render every file template of a node's highstate, as `state.apply` would,
without applying anything: ``python render_all.py CONF_DIR``, where
CONF_DIR is a salt-call configuration (id, roles grain, pillar roots: the
tests' SaltCall writes one).

The highstate's file.managed states with a template are rendered by Salt's
own file.get_managed (the function file.managed renders with) on the repo's
Salt tree with the pillar of CONF_DIR's minion config. Prints JSON: state ID
-> "ok" or the error. Used by the fuzz test (tests/test_fuzz.py).
"""

from __future__ import annotations

import json
import sys

import salt.client
import salt.config


def main(conf_dir: str) -> dict[str, str]:
    opts = salt.config.minion_config(f"{conf_dir}/minion")
    caller = salt.client.Caller(mopts=opts)
    highstate = caller.cmd("state.show_highstate")
    if not isinstance(highstate, dict):
        return {"highstate": f"did not render: {highstate}"}
    out: dict[str, str] = {}
    for state_id, body in sorted(highstate.items()):
        if not isinstance(body, dict) or "file" not in body:
            continue
        args = {k: v for item in body["file"] if isinstance(item, dict) for k, v in item.items()}
        if "managed" not in body["file"] or not args.get("template") or not args.get("source"):
            continue
        try:
            _, _, comment = caller.cmd(
                "file.get_managed",
                args.get("name", state_id),
                args["template"],
                args["source"],
                "",
                None,
                "root",
                "root",
                "0644",
                None,
                "base",
                args.get("context"),
                args.get("defaults"),
                True,
            )
            out[state_id] = comment or "ok"
        except Exception as exc:
            out[state_id] = f"{type(exc).__name__}: {exc}"
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
