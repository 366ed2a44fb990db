"""The DVC-native workflow: reproducible data stages, your own data as a DVC dependency, the sample's own remote.

Each test builds a throwaway project like the repository (code, dvc.yaml, a tiny params profile, a generated
sample tracked by `data.dvc` with `remote: sample`, no default remote) and runs real `dvc` and `eulernet` commands.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_dvc_repro import copy_project

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATA_STAGES = ("ingest", "validate", "label")
GENERATE = ["--subjects", "5", "--seed", "3", "--frames", "16", "--devices", "android_midrange", "iphone_12",
            "--scenes", "indoor", "--attacks", "print", "replay", "--split-by", "subject", "--no-progress"]


def _env(tmp: Path) -> dict:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0",
           "MLFLOW_DISABLE_TELEMETRY": "true", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    env.pop("RAY_ADDRESS", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("EULERNET_STORAGE", None)
    return env


def _run(cmd, cwd: Path, env: dict, ok: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = shlex.split(cmd) if isinstance(cmd, str) else cmd
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n" \
                                     f"{proc.stderr[-5000:]}"
    return proc


def _project(path: Path, env: dict, sample_remote: Path) -> Path:
    """A git + DVC project shaped like the repository, its sample pushed to its own remote."""
    copy_project(path)
    _run("git init -q", path, env)
    _run("dvc init -q", path, env)
    _run(f"dvc remote add sample {sample_remote}", path, env)  # not the default: the sample names it
    _run(["eulernet", "generate", "--out", "data/sample", *GENERATE], path, env)
    _run("dvc add -q data", path, env)
    spec = yaml.safe_load((path / "data.dvc").read_text())
    spec["outs"][0]["remote"] = "sample"  # as the repository's data.dvc
    (path / "data.dvc").write_text(yaml.safe_dump(spec, sort_keys=False))
    _run("dvc push", path, env)
    _run("git add -A", path, env)
    _run("git commit -qm project", path, env)
    return path


def _outs(lock: dict, stage: str) -> dict[str, str]:
    return {o["path"]: o["md5"] for o in lock["stages"][stage]["outs"]}


def _files(root: Path, names: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for name in names:
        p = root / name
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            if f.is_file():
                found[str(f.relative_to(root))] = hashlib.md5(f.read_bytes()).hexdigest()
    return found


@pytest.mark.slow
def test_data_stages_are_byte_identical_across_clones(tmp_path):
    """ingest, validate and label in one project, then in a fresh clone of its commit (its own labeling cache, so
    everything is labeled again): the same dvc.lock hashes and the same bytes, so the clone's `git status` stays
    clean. Nothing in those outputs names the machine, the folder or the time."""
    env = _env(tmp_path)
    a = _project(tmp_path / "a", env, tmp_path / "sample-remote")
    _run("dvc repro label", a, env)
    _run("git add dvc.lock metrics", a, env)
    _run("git commit -qm data-stages", a, env)

    b = tmp_path / "b"
    _run(["git", "clone", "-q", str(a), str(b)], tmp_path, env)
    _run("dvc pull", b, env)  # bare: data.dvc names its remote, there is no default
    repro = _run("dvc repro label", b, env)
    assert "0 from cache" in repro.stdout, repro.stdout[-2000:]  # the clone labeled everything itself
    assert _run("git status --porcelain", b, env).stdout.strip() == ""

    lock_a = yaml.safe_load((a / "dvc.lock").read_text())
    lock_b = yaml.safe_load((b / "dvc.lock").read_text())
    for stage in DATA_STAGES:
        assert _outs(lock_a, stage) == _outs(lock_b, stage), stage
    names = ("artifacts/manifest.csv", "artifacts/quality", "artifacts/shards", "metrics/quality.json")
    files_a, files_b = _files(a, names), _files(b, names)
    assert any(k.endswith(".parquet") for k in files_a) and any(k.endswith(".html") for k in files_a)
    assert files_a == files_b
    for f in files_a:  # no machine path, no time of day in any text output
        if f.endswith((".csv", ".json", ".txt", ".html")):
            text = (a / f).read_text(errors="replace")
            assert str(tmp_path) not in text, f
            assert not re.search(r"20[2-9]\d-?\d\d-?\d\dT", text), f"{f} holds a time stamp"


def _readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _blocks(section: str, lang: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"```{lang}\n(.*?)```", section, re.S)]


def _commands(block: str) -> list[str]:
    cmds = []
    for line in block.splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            cmds.append(line)
    return cmds


@pytest.mark.slow
def test_readme_own_data_steps(tmp_path):
    """README "Your own videos", executed: a tiny generated dataset outside the project, params pointed at it, a
    stale `dvc status` when its CSV changes, validation, then versioning to the user's own remote (refused before
    one exists, and never into the sample's remote). `dvc repro` past validate is the e2e pipeline test's job."""
    env = _env(tmp_path)
    proj = _project(tmp_path / "proj", env, tmp_path / "sample-remote")
    mine, my_remote = tmp_path / "datasets" / "mine", tmp_path / "my-remote"
    section = _readme_section("Your own videos")
    subst = {"/data/mine": str(mine), "/srv/dvc/eulernet": str(my_remote)}

    def real(cmd: str) -> str:
        for k, v in subst.items():
            cmd = cmd.replace(k, v)
        return cmd

    # 1. the dataset (README's generate line; tiny sizes appended, argparse keeps the last value)
    [generate] = [c for b in _blocks(section, "bash") for c in _commands(b) if c.startswith("eulernet generate")]
    _run(shlex.split(real(generate)) + GENERATE, proj, env)
    # 2. params.yaml as the README's yaml block says
    [snippet] = _blocks(section, "yaml")
    data = yaml.safe_load(real(snippet))["data"]
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["data"].update(data)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # 3. run it
    run_block, version_block = [b for b in _blocks(section, "bash") if "dvc " in b]
    for cmd in _commands(run_block):
        if cmd == "dvc repro":
            continue  # label, train, evaluate, register: tests/e2e/test_dvc_repro.py
        out = _run(real(cmd), proj, env)
        if cmd == "dvc status":
            assert re.search(rf"ingest:.*modified:\s+{re.escape(str(mine))}", out.stdout, re.S), out.stdout
    assert str(mine) in (proj / "artifacts/manifest.csv").read_text()  # outside the project: absolute, as given
    assert json.loads((proj / "metrics/quality.json").read_text())["passed"] == 1
    assert "ingest" not in _run("dvc status", proj, env).stdout  # up to date after the run

    # The dataset is a dependency: editing its CSV makes ingest (and all after it) stale.
    csv = mine / data["csv"]
    csv.write_text(csv.read_text() + "\n")
    status = _run("dvc status", proj, env).stdout
    assert re.search(rf"ingest:\s+changed deps:\s+modified:\s+{re.escape(str(mine))}", status), status

    # 4. versioning: without a remote of the user's, `dvc push` refuses (the sample's remote is not a default)
    sample_before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "sample-remote").rglob("*") if p.is_file())
    cmds = [real(c) for c in _commands(version_block)]
    assert [c.split()[:2] for c in cmds] == [["dvc", "remote"], ["mkdir", "-p"], ["dvc", "push"]]
    assert f"dvc import-url {mine} datasets/mine" in cmds[1]
    _run(["bash", "-c", cmds[1]], proj, env)  # import first: what a push before `dvc remote add` would send
    refused = _run("dvc push", proj, env, ok=False)
    assert refused.returncode != 0 and "no remote specified" in refused.stdout + refused.stderr
    _run(["bash", "-c", cmds[0]], proj, env)
    _run(["bash", "-c", cmds[2]], proj, env)
    pushed = [p for p in my_remote.rglob("*") if p.is_file()]
    assert len(pushed) >= 21  # the 20 videos and the CSV (plus the .dir listing)
    sample_after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "sample-remote").rglob("*") if p.is_file())
    assert sample_after == sample_before  # nothing of the user's went to the sample's remote
    params["data"]["root"] = "datasets/mine"
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run("dvc status", proj, env).stdout
    assert re.search(r"ingest:.*modified:\s+datasets/mine", status, re.S), status


def test_in_repo_remote_holds_only_the_sample():
    """dvc-storage/ is the remote of the sample and the shipped reference model, committed to git: every object in
    it belongs to data.dvc's or models/reference.dvc's folder, so a user's data pushed there by mistake
    (`dvc push -r sample`) fails here before it reaches a commit."""
    config = (REPO / ".dvc" / "config").read_text()
    assert not re.search(r"^\s*remote\s*=", config, re.M), ".dvc/config must not set a default remote"
    store = REPO / "dvc-storage" / "files" / "md5"
    expected = set()
    for dvc_file in ("data.dvc", "models/reference.dvc"):
        [out] = yaml.safe_load((REPO / dvc_file).read_text())["outs"]
        assert out.get("remote") == "sample", f"{dvc_file} must name its remote: the in-repo one serves it only"
        tree_md5 = out["md5"].removesuffix(".dir")
        listing = json.loads((store / tree_md5[:2] / f"{tree_md5[2:]}.dir").read_text())
        expected |= {tree_md5} | {e["md5"] for e in listing}
    held = {p.parent.name + p.name.removesuffix(".dir") for p in store.rglob("*") if p.is_file()}
    assert held == expected, f"not the sample's or the reference model's: {sorted(held - expected)[:5]}; missing: " \
                             f"{sorted(expected - held)[:5]}"
