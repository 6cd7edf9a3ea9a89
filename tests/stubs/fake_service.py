"""A test double for Salt's ``service`` module on the test's minions
(minion option ``providers: {service: fake_service}``): a unit is running
when the file of its name in the directory ``fake_service.dir`` says
``active``. The reactor's runner asks and starts services through it, and
nothing on the test host is started or stopped."""

from __future__ import annotations

import os

__virtualname__ = "fake_service"


def __virtual__():
    return __virtualname__


def _path(name: str) -> str:
    return os.path.join(__opts__["fake_service.dir"], os.path.basename(name))  # noqa: F821


def status(name: str, sig: str | None = None) -> bool:
    try:
        with open(_path(name), encoding="utf-8") as handle:
            return handle.read().strip() == "active"
    except OSError:
        return False


def start(name: str, **kwargs) -> bool:
    with open(_path(name), "w", encoding="utf-8") as handle:
        handle.write("active\n")
    return True


def stop(name: str, **kwargs) -> bool:
    with open(_path(name), "w", encoding="utf-8") as handle:
        handle.write("inactive\n")
    return True
