"""The pipeline beyond one machine: a 2-node Ray cluster, an MLflow server and S3 (moto), all on 127.0.0.1.

Only configuration differs from the laptop default: RAY_ADDRESS, MLFLOW_TRACKING_URI, EULERNET_STORAGE, the
AWS_* variables and a DVC S3 remote. The stages run as the same `dvc repro` / `eulernet` commands.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.harness.fixtures import cluster_harness  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# The tiny profile: validate's share gates are opened up because one device and one scene is all a
# 2-core CI run can afford; everything else keeps the repository's embedded-sample values.
OVERRIDES = {
    "data": {"adapter": "sample", "root": "data/sample"},
    "validate": {"devices": [], "scenes": [], "device_share": [0.0, 1.0], "scene_share": [0.0, 1.0],
                 "min_per_cell": 1},
    "label": {"crop_size": 64, "clips_per_video": 1, "concurrency": 2, "max_side": 256},
    "train": {"epochs": 1, "num_workers": 2, "batch_size": 2, "use_gpu": False, "amp": False,
              "max_steps_per_epoch": 2, "width": 0.25},
}


def _run(cmd: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cluster_env(cluster_harness):
    env = cluster_harness.env()
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory, cluster_harness, cluster_env):
    """A copy of the pipeline (dvc.yaml, code, tiny params) with a freshly generated dataset tracked by DVC,
    whose only remote is the S3 bucket of the harness."""
    proj = tmp_path_factory.mktemp("project")
    shutil.copy(ROOT / "dvc.yaml", proj / "dvc.yaml")
    shutil.copy(ROOT / ".dvcignore", proj / ".dvcignore")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for code in ("components", "flows"):  # stage dependencies in dvc.yaml
        shutil.copytree(ROOT / code, proj / code, ignore=ignore)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in OVERRIDES.items():
        params[section] = {**(params.get(section) or {}), **values}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    _run([str(BIN / "eulernet"), "generate", "--out", "data/sample", "--subjects", "4", "--split-ratio", "2", "1", "1",
          "--devices", "iphone_12", "--scenes", "indoor", "--attacks", "print", "--frames", "16",
          "--size", "160", "128", "--no-progress"], proj, cluster_env)

    dvc = [str(BIN / "dvc")]
    _run(dvc + ["init", "--no-scm", "-q"], proj, cluster_env)
    _run(dvc + ["config", "core.analytics", "false"], proj, cluster_env)
    _run(dvc + ["remote", "add", "-d", "cluster", cluster_harness.dvc_remote_uri], proj, cluster_env)
    _run(dvc + ["remote", "modify", "cluster", "endpointurl", cluster_harness.s3.endpoint_url], proj, cluster_env)
    _run(dvc + ["add", "data"], proj, cluster_env)
    return proj


def test_ray_nodes_are_separate_and_workers_reach_s3(cluster_harness):
    h = cluster_harness
    names = h.ray.node_names()
    assert sorted(names.values()) == ["head", "node_b"], names
    for node in h.ray.alive_nodes():
        assert node["Resources"]["CPU"] == 1.0  # each node its own share, not the machine's 2 cores

    # One task pinned to each node by its custom resource writes an object to S3 from the worker process.
    ids = h.ray.run_driver(f"""
import pyarrow.fs as pafs

@ray.remote(num_cpus=1)
def put(key):
    node = ray.get_runtime_context().get_node_id()
    fs, path = pafs.FileSystem.from_uri("s3://{h.bucket}/probe/" + key)
    with fs.open_output_stream(path) as f:
        f.write(node.encode())
    return node

RESULT = ray.get([put.options(resources={{"node_head": 1}}).remote("head"),
                  put.options(resources={{"node_b": 1}}).remote("node_b")])
""")
    assert [names[i] for i in ids] == ["head", "node_b"]
    s3 = h.s3.client()
    for key, node_id in zip(("head", "node_b"), ids):
        assert s3.get_object(Bucket=h.bucket, Key=f"probe/{key}")["Body"].read().decode() == node_id

    ran = {(t["name"], names.get(t["node_id"])) for t in h.ray.tasks() if t["state"] == "FINISHED"}
    assert {("put", "head"), ("put", "node_b")} <= ran


def test_mlflow_server_tracks_in_sql_and_stores_artifacts_in_s3(cluster_harness, cluster_env, tmp_path):
    h = cluster_harness
    code = """
import mlflow
mlflow.set_experiment("harness-probe")
with mlflow.start_run() as run:
    mlflow.log_param("where", "cluster")
    mlflow.log_metric("acer", 0.125)
    mlflow.log_text("hello from the client", "notes/hello.txt")
client = mlflow.MlflowClient()
client.create_registered_model("harness-probe-model")
v = client.create_model_version("harness-probe-model", f"runs:/{run.info.run_id}/notes", run_id=run.info.run_id)
print(run.info.run_id, v.version)
"""
    # The client has no S3 credentials: the server proxies artifacts to S3, as on a real cluster.
    env = {k: v for k, v in cluster_env.items() if not k.startswith(("AWS_", "MLFLOW_S3"))}
    out = _run([sys.executable, "-c", code], tmp_path, env, timeout=120)
    run_id, version = out.stdout.split()[-2:]

    run = h.mlflow.api_get("runs/get", run_id=run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    assert {"key": "where", "value": "cluster"} in run["data"]["params"]
    assert run["data"]["metrics"][0]["value"] == 0.125
    model = h.mlflow.api_get("registered-models/get", name="harness-probe-model")["registered_model"]
    assert model["latest_versions"][0]["version"] == version
    keys = h.s3.list_keys(h.bucket, "mlflow/")
    assert any(k.endswith(f"{run_id}/artifacts/notes/hello.txt") for k in keys), keys
    # Tracking data is in the server's SQL database, not in a local mlruns/ of the client.
    assert not (tmp_path / "mlruns").exists()
    assert (h.mlflow.workdir / "mlflow.db").stat().st_size > 0


def test_dvc_push_and_pull_through_the_s3_remote(cluster_harness, cluster_env, project):
    h = cluster_harness
    before = _tree_digest(project / "data")
    assert len([k for k in before if k.endswith(".mp4")]) == 8
    dvc = [str(BIN / "dvc")]
    _run(dvc + ["push"], project, cluster_env)
    keys = h.s3.list_keys(h.bucket, "dvc/")
    assert len(keys) >= len(before) + 1  # every file plus the .dir listing

    shutil.rmtree(project / "data")
    shutil.rmtree(project / ".dvc" / "cache")
    # As infra/retrain.sh does: the pipeline's outputs were never pushed, only the data must come back.
    _run(dvc + ["pull", "--allow-missing"], project, cluster_env)
    assert _tree_digest(project / "data") == before


def test_pipeline_runs_on_the_cluster(cluster_harness, cluster_env, project):
    h = cluster_harness
    if not (project / "data" / "sample" / "manifest.csv").is_file():  # the DVC test left it pulled
        _run([str(BIN / "dvc"), "pull", "--allow-missing"], project, cluster_env)
    _run([str(BIN / "dvc"), "repro"], project, cluster_env, timeout=900)

    # The stages' work (labeling actors, shard writes and reads, training workers) ran on both nodes. Which
    # node gets which task is Ray's choice (Train's 2 fractional-CPU workers may share one node), so the
    # assertion is on the stages' work as a whole, not on one operator.
    names = h.ray.node_names()
    stage_markers = ("LabelWorker", "Write", "ReadFiles", "RayTrainWorker")
    by_node: dict[str, set[str]] = {}
    for t in h.ray.tasks():
        if t["state"] == "FINISHED" and any(m in t["name"] for m in stage_markers) and t["node_id"] in names:
            by_node.setdefault(names[t["node_id"]], set()).add(t["name"])
    assert set(by_node) == {"head", "node_b"}, by_node
    assert any("LabelWorker" in n for ns in by_node.values() for n in ns), by_node
    assert any("RayTrainWorker" in n for ns in by_node.values() for n in ns), by_node

    # Ray Train checkpoints went to EULERNET_STORAGE on S3, MLflow artifacts to the server's S3 destination.
    storage_keys = h.s3.list_keys(h.bucket, "storage/")
    assert any("checkpoint" in k for k in storage_keys), storage_keys[:50]
    # Labeled shards too (train and evaluate read them back from there).
    assert any(k.startswith("storage/shards/data/") and k.endswith(".parquet") for k in storage_keys), storage_keys[:50]
    train = json.loads((project / "artifacts" / "model" / "train_metrics.json").read_text())
    assert train["ray_run"].startswith(h.storage_uri + "/"), train["ray_run"]
    run = h.mlflow.api_get("runs/get", run_id=train["mlflow_run_id"])["run"]
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["artifact_uri"].startswith("mlflow-artifacts:")
    assert any(f"{train['mlflow_run_id']}/artifacts/" in k for k in h.s3.list_keys(h.bucket, "mlflow/"))

    # The registered model and its aliases are visible through the server's REST API, its files in S3.
    registered = json.loads((project / "artifacts" / "register" / "registered.json").read_text())
    name = registered["name"]
    model = h.mlflow.api_get("registered-models/get", name=name)["registered_model"]
    aliases = {a["alias"]: a["version"] for a in model.get("aliases", [])}
    assert aliases.get("candidate") == registered["version"], model
    version = h.mlflow.api_get("model-versions/get", name=name, version=aliases["candidate"])["model_version"]
    assert version["status"] == "READY"
    mlflow_keys = h.s3.list_keys(h.bucket, "mlflow/")
    assert any(k.endswith("/MLmodel") for k in mlflow_keys), mlflow_keys
    # Nothing fell back to the laptop default.
    assert not (project / "mlflow.db").exists() and not (project / "mlruns").exists()
