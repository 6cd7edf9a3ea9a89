"""
Enable an Apache module, site or configuration snippet with Debian's own tools
(a2enmod, a2ensite, a2enconf): Salt 3008's core has no such state any more.

.. code-block:: yaml

    apache-config-module-remoteip:
      apache_conf.enabled:
        - name: remoteip
        - kind: module

    apache-config-site-default-ssl-enabled:
      apache_conf.enabled:
        - name: default-ssl
        - kind: site

A state of its own rather than ``cmd.run`` with ``creates``: any state that
has ``creates``, ``unless`` or ``onlyif`` makes Salt 3008 look for a
``mod_run_check`` in its state module, and the miss loads every state and
execution module of the minion (2.5-3 s of each highstate on a user-mode node).
"""

from __future__ import annotations

import os

__virtualname__ = "apache_conf"

# kind -> (Debian's tool, directory under the configuration root, file suffix)
KINDS = {
    "module": ("a2enmod", "mods-enabled", ".load"),
    "site": ("a2ensite", "sites-enabled", ".conf"),
    "conf": ("a2enconf", "conf-enabled", ".conf"),
}


def __virtual__():
    # Not gated on the a2enmod binary: the package that brings it is often
    # installed by the same highstate, after the state modules were loaded.
    if __grains__.get("os_family") == "Debian":  # noqa: F821
        return __virtualname__
    return (False, "apache_conf: Debian's a2enmod/a2ensite layout only")


def enabled_path(name: str, kind: str, confdir: str = "/etc/apache2") -> str:
    """The link that says ``name`` is enabled (pure); ValueError names a bad kind."""
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    _, subdir, suffix = KINDS[kind]
    return os.path.join(confdir, subdir, name + suffix)


def enabled(name: str, kind: str = "module", confdir: str = "/etc/apache2") -> dict:
    """Enable ``name`` (a module, site or conf) unless its link in ``confdir`` is there."""
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        link = enabled_path(name, kind, confdir)
    except ValueError as err:
        return {**ret, "result": False, "comment": str(err)}
    if os.path.exists(link):
        return {**ret, "comment": f"Apache {kind} {name} is already enabled"}
    if __opts__["test"]:  # noqa: F821
        pending = {"result": None, "changes": {"enabled": name}}
        return {**ret, **pending, "comment": f"Apache {kind} {name} would be enabled"}
    tool = KINDS[kind][0]
    out = __salt__["cmd.run_all"](  # noqa: F821
        [tool, "-q", name], python_shell=False, env={"APACHE_CONFDIR": confdir}
    )
    if out["retcode"] != 0:
        return {**ret, "result": False, "comment": f"{tool} {name} failed: {(out['stderr'] or out['stdout']).strip()}"}
    if not os.path.exists(link):
        return {**ret, "result": False, "comment": f"{tool} {name} succeeded but {link} is not there"}
    return {**ret, "changes": {"enabled": name}, "comment": f"Apache {kind} {name} enabled"}
