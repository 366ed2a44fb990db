"""Nothing may assume the driver's local disk is visible to Ray workers.

The harness's worker node gets a private, empty view of the project folder (its own mount namespace), the
head runs no tasks (0 CPUs), so every Ray task and actor runs where the driver's files are not: exactly a
second machine. Data must travel through the storage URI (S3 here) or through Ray itself.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness import NodeSpec, RayNodes, S3Server, private_dirs_supported
from tests.harness.cluster import QUIET_ENV

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "eulernet"


@pytest.fixture(scope="module")
def isolated(tmp_path_factory):
    if not private_dirs_supported():
        pytest.skip("needs root and `unshare --mount` to hide the driver's disk from the worker node")
    work = tmp_path_factory.mktemp("isolated")
    project = work / "project"
    project.mkdir()
    s3 = S3Server(work / "s3").start()
    s3.create_bucket(BUCKET)
    ray = RayNodes(
        work / "ray",
        head=NodeSpec("head", num_cpus=0, resources={"node_head": 1}),
        workers=[NodeSpec("node_b", num_cpus=2, resources={"node_b": 1}, private_dirs=(str(project),))],
        extra_env=s3.client_env(), dashboard=False,
    )
    try:
        ray.start()
        env = {**os.environ, **QUIET_ENV, **s3.client_env(), **ray.auth_env, "RAY_ADDRESS": ray.address,
               "EULERNET_STORAGE": f"s3://{BUCKET}/storage", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        yield {"project": project, "s3": s3, "ray": ray, "env": env}
    finally:
        ray.stop()
        s3.stop()


def _run(cmd, cwd, env, timeout=300):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_worker_node_does_not_see_the_driver_disk(isolated):
    marker = isolated["project"] / "driver_only.txt"
    marker.write_text("on the driver's disk")
    seen = isolated["ray"].run_driver(f"""
import os
@ray.remote(num_cpus=1)
def look(path):
    return os.path.exists(path), ray.get_runtime_context().get_node_id()
RESULT = ray.get(look.remote({str(marker)!r}))
""")
    nodes = {n["NodeID"]: n["Resources"] for n in isolated["ray"].alive_nodes()}
    exists, node_id = seen
    assert "node_b" in nodes[node_id]  # the head has no CPU: every task lands on the worker node
    assert exists is False and marker.is_file()


def test_label_stage_needs_no_driver_disk(isolated):
    project, env = isolated["project"], isolated["env"]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {**(params.get("data") or {}), "adapter": "sample", "root": "data/sample"}
    params["label"] = {**(params.get("label") or {}), "crop_size": 64, "clips_per_video": 1, "concurrency": 2,
                       "max_side": 256}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    gen = _run([str(BIN / "eulernet"), "generate", "--out", "data/sample", "--subjects", "2", "--devices", "iphone_12",
                "--scenes", "indoor", "--attacks", "print", "--frames", "16", "--size", "160", "128", "--no-progress"],
               project, env)
    assert gen.returncode == 0, gen.stderr
    ingest = _run([str(BIN / "eulernet"), "ingest", "--params", "params.yaml"], project, env)
    assert ingest.returncode == 0, ingest.stderr

    label = _run([str(BIN / "eulernet"), "label", "--params", "params.yaml", "--no-progress", "--skip-gates"], project,
                 env, timeout=600)
    assert label.returncode == 0, f"{label.stdout[-2000:]}\n{label.stderr[-4000:]}"
    import pandas as pd

    report = pd.read_csv(project / "artifacts" / "shards" / "report.csv")
    assert len(report) == 4
    assert (report["status"] == "ok").all(), report[["video_id", "status", "reason"]].to_string()
    # The shards live under the storage URI, where every node (and the train stage's workers) can read them.
    keys = isolated["s3"].list_keys(BUCKET, "storage/")
    assert any(k.startswith("storage/shards/data/") and k.endswith(".parquet") for k in keys), keys
    index = pd.read_csv(project / "artifacts" / "shards" / "index.csv", keep_default_na=False)
    assert all(f.startswith(f"s3://{BUCKET}/storage/shards/") for f in index["files"]), index["files"].tolist()
    # Training's read path: Ray Data tasks on the worker node stream the clips back from S3.
    shards = project / "artifacts" / "shards"
    counted = isolated["ray"].run_driver(f"""
from components.labeling.shards import read_shards
ds = read_shards({str(shards)!r}, columns=["video_id", "frames"])
RESULT = [ds.count(), list(ds.take(1)[0]["frames"].shape)]
""", timeout_s=180)
    assert counted == [4, [4, 64, 64, 3]]
    shutil.rmtree(project / "artifacts", ignore_errors=True)
