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


def test_the_wheel_installs_a_working_mindroute_command(tmp_path) -> None:
    """`pip install .` as an operator runs it: a wheel built from the checkout, installed with the locked
    dependencies into a fresh virtualenv, gives a `mindroute` command that migrates a database from outside the
    checkout (the migrations ship in the package)."""
    import shutil
    import subprocess
    import sys

    # Built from a copy: setuptools writes build/ and an egg-info beside the sources it builds.
    source = tmp_path / "source"
    skip = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "data", "tests", "__pycache__", "*.db*")
    shutil.copytree(PROJECT_ROOT, source, ignore=skip)
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(source)]
    subprocess.run(build, check=True, timeout=600, capture_output=True)
    (wheel,) = wheels.glob("mindroute-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(PROJECT_ROOT / "requirements.lock"), str(wheel)], check=True, timeout=900)
    command = str(venv / "bin" / "mindroute")
    env = {"PATH": "/usr/bin:/bin"}  # no MINDROUTE_* settings: the defaults, data/ in the folder it runs in
    version = subprocess.run([command, "--version"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    from mindroute import __version__

    assert version.stdout.strip() == f"mindroute {__version__}"
    upgraded = subprocess.run(
        [command, "db", "upgrade"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("database at revision ")
    assert (tmp_path / "data" / "mindroute.db").is_file()
    current = subprocess.run([command, "db", "current"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert "(up to date)" in current.stdout
    # The Korean catalogs ship in the wheel and compile where it is installed.
    korean = "from mindroute import i18n; i18n.use('ko'); print(i18n._('never'))"
    translated = subprocess.run(
        [str(venv / "bin" / "python"), "-c", korean], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert translated.stdout.strip() == "없음", translated.stderr
