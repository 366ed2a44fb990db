"""infra/: every manifest parses, the expected objects exist, and every Ray/MLflow version named is the pinned one."""
from __future__ import annotations

import configparser
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
YAML_FILES = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))
RAY_IMAGE = re.compile(r"rayproject/ray(?:-ml)?:(?P<tag>[^\s\"',}\]]+)")
MLFLOW_IMAGE = re.compile(r"ghcr\.io/mlflow/mlflow:v?(?P<tag>[^\s\"',}\]]+)")


def _pins() -> dict[str, str]:
    """``name -> version`` for every ``==`` pin of pyproject.toml's dependencies (extras stripped)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)\s*", dep)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


PINS = _pins()


def _docs(path: Path) -> list:
    with path.open() as fh:
        return [d for d in yaml.safe_load_all(fh) if d is not None]


def _all_docs() -> dict[str, list]:
    return {str(p.relative_to(ROOT)): _docs(p) for p in YAML_FILES}


def _by_kind(kind: str) -> list[dict]:
    return [d for docs in _all_docs().values() for d in docs if isinstance(d, dict) and d.get("kind") == kind]


def _walk(node, key=None):
    """Yield (key, value) for every scalar in a parsed YAML tree, descending into embedded YAML strings."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)
    else:
        yield key, node
        # KubeRay embeds whole YAML documents in strings (serveConfigV2, runtimeEnvYAML).
        if key in ("serveConfigV2", "runtimeEnvYAML") and isinstance(node, str):
            yield from _walk(yaml.safe_load(node))


def _embedded(obj: dict, field: str) -> dict:
    text = obj["spec"][field]
    assert isinstance(text, str), f"{obj['metadata']['name']}: spec.{field} must be a YAML string (KubeRay)"
    return yaml.safe_load(text)


def test_pinned_ray_version_is_the_installed_one():
    import ray

    assert "ray" in PINS, "pyproject.toml must pin ray with =="
    assert ray.__version__ == PINS["ray"]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_yaml_parses(path):
    docs = _docs(path)
    assert docs, f"{path} holds no YAML document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: top level must be a mapping, got {type(doc).__name__}"
        list(_walk(doc))  # embedded YAML strings parse too


def test_expected_kinds_present():
    kinds = {d.get("kind") for docs in _all_docs().values() for d in docs if isinstance(d, dict)}
    expected = {"RayCluster", "RayJob", "RayService", "ConfigMap", "Secret", "Deployment", "Service", "StatefulSet"}
    assert expected <= kinds, f"missing kinds: {sorted(expected - kinds)}"
    for kind in ("RayCluster", "RayJob", "RayService"):
        for obj in _by_kind(kind):
            assert obj["apiVersion"] == "ray.io/v1", f"{kind} {obj['metadata']['name']}: {obj['apiVersion']}"


def test_every_ray_image_and_version_is_the_pinned_one():
    pinned = PINS["ray"]
    images, versions = [], []
    texts = {p: p.read_text() for p in YAML_FILES}
    texts[INFRA / "docker" / "Dockerfile"] = (INFRA / "docker" / "Dockerfile").read_text()
    for path, text in texts.items():
        for m in RAY_IMAGE.finditer(text):
            images.append((path.name, m.group(0)))
            tag = m.group("tag")
            # Allowed tags: VERSION, VERSION-py311, VERSION-gpu, VERSION-py311-gpu (and -cpu / -cu1xx variants).
            assert re.fullmatch(rf"{re.escape(pinned)}(-py3\d+)?(-(gpu|cpu|cu\d+))?", tag), \
                f"{path.name}: image {m.group(0)} does not match pinned ray {pinned}"
    for rel, docs in _all_docs().items():
        for doc in docs:
            for key, value in _walk(doc):
                if key == "rayVersion":
                    versions.append(value)
                    assert str(value) == pinned, f"{rel}: rayVersion {value} != pinned {pinned}"
    assert len(images) >= 8, images  # cluster + job + service + launcher + Dockerfile all name one
    assert len(versions) >= 2, versions  # RayCluster and RayService's cluster


def test_raycluster_has_cpu_and_gpu_worker_groups():
    (cluster,) = _by_kind("RayCluster")
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    gpu = [g for g in groups.values() if g["rayStartParams"].get("num-gpus")]
    cpu = [g for g in groups.values() if not g["rayStartParams"].get("num-gpus")]
    assert gpu and cpu, f"need a CPU and a GPU worker group, got {sorted(groups)}"
    for g in gpu:
        (container,) = g["template"]["spec"]["containers"]
        assert container["image"].endswith("-gpu")
        assert container["resources"]["limits"]["nvidia.com/gpu"] == int(g["rayStartParams"]["num-gpus"])
    for g in cpu:
        (container,) = g["template"]["spec"]["containers"]
        assert not container["image"].endswith("-gpu")
        assert "nvidia.com/gpu" not in container["resources"]["limits"]
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]


def test_rayjob_runs_the_retraining_pipeline_with_cluster_configuration():
    (job,) = _by_kind("RayJob")
    assert "infra/retrain.sh" in job["spec"]["entrypoint"]
    script = (INFRA / "retrain.sh").read_text()
    # dvc pull strictly before dvc repro, then outputs pushed back.
    pull, repro, push = (script.index(f"\ndvc {c}") for c in ("pull", "repro", "push"))
    assert pull < repro < push
    assert "--local" in script, "the cluster remote must not change the committed default remote"
    runtime_env = _embedded(job, "runtimeEnvYAML")
    env = runtime_env["env_vars"]
    assert env["MLFLOW_TRACKING_URI"].startswith("http")
    assert env["EULERNET_STORAGE"].startswith("s3://")
    assert env["EULERNET_DVC_REMOTE"].startswith("s3://")
    # The ConfigMap every pod loads carries the same values.
    (cm,) = [c for c in _by_kind("ConfigMap") if c["metadata"]["name"] == "eulernet-env"]
    for key in ("MLFLOW_TRACKING_URI", "EULERNET_STORAGE", "EULERNET_DVC_REMOTE"):
        assert cm["data"][key] == env[key], key


def _pip_packages(runtime_env: dict) -> list[str]:
    pip = runtime_env["pip"]
    return pip["packages"] if isinstance(pip, dict) else pip


@pytest.mark.parametrize("kind,field", [("RayJob", "runtimeEnvYAML"), ("RayService", "serveConfigV2")])
def test_runtime_env_pins_match_pyproject(kind, field):
    (obj,) = _by_kind(kind)
    parsed = _embedded(obj, field)
    envs = [parsed] if kind == "RayJob" else [a["runtime_env"] for a in parsed["applications"]]
    checked = 0
    for env in envs:
        for req in _pip_packages(env):
            m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", req)
            if m and m.group(1).lower() in PINS:
                assert m.group(2) == PINS[m.group(1).lower()], f"{kind}: {req} vs pyproject {PINS[m.group(1).lower()]}"
                checked += 1
            # Ray comes from the image; installing another one into the runtime env would shadow it.
            assert not req.lower().startswith("ray"), f"{kind}: do not pip-install {req} over the image's Ray"
    assert checked >= 3


def test_rayservice_serves_the_configured_application():
    (service,) = _by_kind("RayService")
    served = _embedded(service, "serveConfigV2")
    config_path = INFRA / "serve_config.yaml"
    if not config_path.exists():
        pytest.skip("infra/serve_config.yaml not written yet")
    local = yaml.safe_load(config_path.read_text())

    def shape(cfg):
        return {a["name"]: (a["import_path"], a.get("route_prefix", "/"),
                            sorted(d["name"] for d in a.get("deployments", [])),
                            a.get("args", {}).get("alias"))
                for a in cfg["applications"]}

    assert shape(served) == shape(local), "update infra/kuberay/rayservice.yaml serveConfigV2 from serve_config.yaml"
    assert served["http_options"]["port"] == local["http_options"]["port"]
    for app in served["applications"]:
        module = app["import_path"].split(":")[0]
        assert (ROOT / (module.replace(".", "/") + ".py")).is_file(), f"{module} not in the repository"
        assert app["args"]["alias"] == "champion"
        assert app["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"].startswith("http")


def test_mlflow_server_uses_database_and_s3_with_the_pinned_version():
    compose = _docs(INFRA / "mlflow" / "docker-compose.yaml")[0]
    (deployment,) = [d for d in _by_kind("Deployment") if d["metadata"]["name"] == "mlflow"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    # The k8s command takes the database URI from its Secret (it holds a password): resolve it.
    (db_secret,) = [d for d in _by_kind("Secret") if d["metadata"]["name"] == "mlflow-db"]
    k8s_command = " ".join(container["args"]).replace(
        '"$MLFLOW_BACKEND_STORE_URI"', db_secret["stringData"]["MLFLOW_BACKEND_STORE_URI"])
    commands = {
        "k8s": (container["image"], k8s_command),
        "compose": (compose["services"]["mlflow"]["image"], compose["services"]["mlflow"]["command"]),
    }
    for where, (image, command) in commands.items():
        m = MLFLOW_IMAGE.fullmatch(image)
        assert m and m.group("tag") == PINS["mlflow"], f"{where}: {image} vs mlflow {PINS['mlflow']}"
        assert "mlflow server" in command
        assert re.search(r"--backend-store-uri\s+\S*postgresql", command), where
        assert re.search(r"--artifacts-destination\s+s3://", command), where
    assert "postgres" in compose["services"]


def test_cluster_launcher_config():
    (cfg,) = _docs(INFRA / "cluster-launcher" / "aws.yaml")
    assert cfg["provider"]["type"] == "aws"
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    gpu = [t for t in types.values() if t.get("docker", {}).get("worker_image", "").endswith("-gpu")]
    assert gpu, "a GPU worker type with the -gpu image"
    assert all(t.get("max_workers", 0) >= t.get("min_workers", 0) for t in types.values())


def test_dvc_s3_remote_example():
    cp = configparser.ConfigParser()
    cp.read_string((INFRA / "dvc" / "config.s3.example").read_text())
    remote = cp[cp["core"]["remote"].join(("remote \"", "\"")).join("''")]
    assert remote["url"].startswith("s3://")
