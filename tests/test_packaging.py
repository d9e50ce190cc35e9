"""The locks agree with the direct requirements they were generated from (scripts/lock.sh)."""

from __future__ import annotations

import re
from pathlib import Path

from mindroute.config import PROJECT_ROOT

_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)")


def _pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_every_direct_pin_is_the_locked_version() -> None:
    for direct, lock in (("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")):
        wanted = _pins(PROJECT_ROOT / direct)
        locked = _pins(PROJECT_ROOT / lock)
        assert wanted, direct
        assert {name: locked.get(name) for name in wanted} == wanted, f"{lock} is stale: run scripts/lock.sh"


def test_the_dev_lock_holds_the_app_lock_unchanged() -> None:
    app = _pins(PROJECT_ROOT / "requirements.lock")
    dev = _pins(PROJECT_ROOT / "requirements-dev.lock")
    assert {name: dev.get(name) for name in app} == app


def test_every_line_of_a_lock_is_pinned() -> None:
    for lock in ("requirements.lock", "requirements-dev.lock"):
        for line in (PROJECT_ROOT / lock).read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                assert _PIN.match(line.strip()), f"{lock}: {line!r} is not pinned"
