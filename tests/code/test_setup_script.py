"""CI that cannot hang (issue 13, item 7): a per-test timeout is configured, and `bin/setup` refuses an
unsupported Python, saying which one it found, before it creates or uses a venv."""
from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_a_per_test_timeout_is_configured_above_the_slowest_test():
    ini = PYPROJECT["tool"]["pytest"]["ini_options"]
    timeout = int(ini["timeout"])
    # The slowest tests (tests/e2e: a full `dvc repro`, the temporal benchmark) take ~10 min on 2 busy cores.
    assert 20 * 60 <= timeout <= 60 * 60, timeout
    assert ini.get("timeout_method", "signal") in ("signal", "thread")
    # Explicit per-test timeouts may only be longer than... nothing: none may exceed the global one either.
    for path in (ROOT / "tests").rglob("*.py"):
        for m in re.finditer(r"mark\.timeout\((\d+)", path.read_text()):
            assert int(m.group(1)) <= timeout, f"{path}: timeout {m.group(1)} > the global {timeout}"


def test_pytest_timeout_plugin_is_active(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("timeout")
    assert int(pytestconfig.getini("timeout")) == int(PYPROJECT["tool"]["pytest"]["ini_options"]["timeout"])


def test_setup_supports_exactly_the_python_pyproject_requires():
    spec = PYPROJECT["project"]["requires-python"]
    assert spec == ">=3.11,<3.12", "update SUPPORTED in bin/setup with requires-python"
    assert re.search(r"^SUPPORTED=3\.11$", (ROOT / "bin" / "setup").read_text(), re.M)


BASH = shutil.which("bash")


@pytest.fixture
def setup_copy(tmp_path):
    """bin/setup in an empty project folder (no .venv), a folder for fake interpreters and one with the only
    external tool the script needs before its Python check (so no real python3.11 is on the PATH)."""
    (tmp_path / "repo" / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "bin" / "setup", tmp_path / "repo" / "bin" / "setup")
    (tmp_path / "fake").mkdir()
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "dirname").symlink_to(shutil.which("dirname"))
    return tmp_path


def path(root: Path) -> str:
    return f"{root / 'fake'}:{root / 'tools'}"


def fake_python(folder: Path, name: str, version: str) -> Path:
    p = folder / name
    p.write_text(f"#!/bin/sh\necho {version}\n")
    p.chmod(0o755)
    return p


def run_setup(root: Path, env: dict, sourced: bool = False) -> subprocess.CompletedProcess:
    cmd = [BASH, "-c", 'source bin/setup || echo "AFTER=$?"'] if sourced else [BASH, "bin/setup"]
    return subprocess.run(cmd, cwd=root / "repo", env=env, capture_output=True, text=True, timeout=60)


def test_setup_refuses_an_unsupported_python_and_names_it(setup_copy):
    py = fake_python(setup_copy / "fake", "python3.12", "3.12.4")
    env = {"PATH": path(setup_copy), "PYTHON": str(py)}
    proc = run_setup(setup_copy, env)
    assert proc.returncode == 1
    assert f"found Python 3.12.4 at {py}" in proc.stderr and "needs Python 3.11.x" in proc.stderr
    assert not (setup_copy / "repo" / ".venv").exists()  # refused before creating anything

    proc = run_setup(setup_copy, env, sourced=True)  # sourced (bin/test): `return`, the caller sees the failure
    assert "found Python 3.12.4" in proc.stderr and "AFTER=1" in proc.stdout


def test_setup_falls_back_to_python3_only_when_it_is_supported(setup_copy):
    fake_python(setup_copy / "fake", "python3", "3.10.14")
    proc = run_setup(setup_copy, {"PATH": path(setup_copy)})  # no python3.11 on this PATH: python3 is tried
    assert proc.returncode == 1 and "found Python 3.10.14 at" in proc.stderr, proc.stderr

    proc = run_setup(setup_copy, {"PATH": path(setup_copy), "PYTHON": "/nonexistent/python3.11"})
    assert proc.returncode == 1 and "PYTHON=/nonexistent/python3.11 is not an executable" in proc.stderr


def test_setup_refuses_an_existing_venv_of_another_python(setup_copy):
    venv_bin = setup_copy / "repo" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    fake_python(venv_bin, "python", "3.13.1")
    proc = run_setup(setup_copy, {"PATH": path(setup_copy)})
    assert proc.returncode == 1
    assert "found Python 3.13.1 in .venv" in proc.stderr and "remove .venv" in proc.stderr


@pytest.mark.skipif(BASH is None, reason="bin/test is a bash script")
def test_bin_test_runs_quiet_tests_alone_and_an_empty_phase_is_no_failure():
    """`bin/test` runs the suite in two phases (xdist workers, then the `quiet` tests serially). Selecting one fast
    test leaves the quiet phase empty: pytest exits 5 there, and the script must still succeed; the soak is in the
    quiet phase, not the parallel one."""
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "EULERNET_TEST"))}
    one = "test_writes_land_whole_and_leave_no_temporaries"
    proc = subprocess.run([BASH, str(ROOT / "bin/test"), "-q", "-p", "no:cacheprovider", "-k", one], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^1 passed", proc.stdout, re.M) and re.search(r"deselected", proc.stdout), proc.stdout[-2000:]
    quiet = subprocess.run([sys.executable, "-m", "pytest", "tests", "-q", "--co", "-m", "quiet",
                            "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert "tests/serve/test_soak.py::test_soak_with_a_killed_replica_and_a_moved_alias" in quiet.stdout, quiet.stdout
