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


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pin(dep: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)\s*", dep)
    return (m.group(1).lower(), m.group(2)) if m else None


def _pins() -> dict[str, str]:
    """``name -> version`` for every ``==`` pin of pyproject.toml, core and extras (package extras stripped)."""
    pins: dict[str, str] = {}
    for dep in [*PROJECT["dependencies"], *(d for ds in PROJECT["optional-dependencies"].values() for d in ds)]:
        pin = _pin(dep)
        if pin:
            assert pins.setdefault(*pin) == pin[1], f"{pin[0]} pinned to two versions in pyproject.toml"
            pins[pin[0]] = pin[1]
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


def test_serving_extra_carries_no_pipeline_packages():
    """A serving image installs the core plus `[serve]`: no Great Expectations, DVC or labeling-only packages."""
    extras = PROJECT["optional-dependencies"]
    serving = [d.lower() for d in [*PROJECT["dependencies"], *extras["serve"]]]
    for heavy in ("great-expectations", "dvc", "face-alignment", "matplotlib", "scikit-video"):
        assert not any(d.startswith(heavy) for d in serving), heavy
    everything = {e.strip() for e in extras["all"][0].split("[", 1)[1].rstrip("]").split(",")}
    assert everything == set(extras) - {"all", "dev", "test"}  # the default install really is all of them


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
    assert len(images) >= 3, images  # the Dockerfile's CPU and GPU bases, the RayJob's submitter
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


# The project image: infra/docker/Dockerfile built from the pinned Ray image; `-gpu` is its CUDA torch build.
PROJECT_IMAGE = re.compile(r"(?:[\w.\-]+/)*eulernet-fas:(?P<tag>[\w.\-]+)")
DOCKERFILE = (INFRA / "docker" / "Dockerfile").read_text()


@pytest.mark.parametrize("kind,field", [("RayJob", "runtimeEnvYAML"), ("RayService", "serveConfigV2")])
def test_runtime_envs_install_nothing_the_image_carries(kind, field):
    """torch and the other dependencies come from the project image, never from a pip install at job start
    (GBs on every node, per job: past the setup timeout)."""
    (obj,) = _by_kind(kind)
    parsed = _embedded(obj, field)
    envs = [parsed] if kind == "RayJob" else [a["runtime_env"] for a in parsed["applications"]]
    for env in envs:
        for installer in ("pip", "uv", "conda", "py_executable"):
            assert installer not in env, f"{kind}: runtime_env {installer} installs at job start; use the image"
    if kind == "RayJob":  # the entrypoint only re-points the `eulernet` command at the commit's code
        for cmd in re.findall(r"pip install[^&;]*", obj["spec"]["entrypoint"]):
            assert "--no-deps" in cmd, obj["spec"]["entrypoint"]


def _containers(obj: dict) -> list[tuple[str, dict, dict]]:
    """(group name, rayStartParams, container) of every Ray node container of a RayCluster or RayService."""
    spec = obj["spec"].get("rayClusterConfig", obj["spec"])
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return [(name, g.get("rayStartParams") or {}, c) for name, g in groups for c in g["template"]["spec"]["containers"]]


def test_every_ray_node_runs_the_project_image():
    """RayCluster, RayService and launcher nodes run the project image, its -gpu build exactly on GPU nodes."""
    checked = 0
    for obj in [*_by_kind("RayCluster"), *_by_kind("RayService")]:
        for group, params, container in _containers(obj):
            m = PROJECT_IMAGE.fullmatch(container["image"])
            assert m, f"{obj['metadata']['name']}/{group}: {container['image']} is not the project image"
            gpu = bool(params.get("num-gpus"))
            assert m.group("tag").endswith("-gpu") == gpu, f"{obj['metadata']['name']}/{group}: {container['image']}"
            assert ("nvidia.com/gpu" in container["resources"]["limits"]) == gpu, group
            checked += 1
    (launcher,) = _docs(INFRA / "cluster-launcher" / "aws.yaml")
    images = [launcher["docker"][k] for k in ("image", "head_image", "worker_image")]
    images += [t["docker"]["worker_image"] for t in launcher["available_node_types"].values() if "docker" in t]
    for image in images:
        assert PROJECT_IMAGE.fullmatch(image), f"aws.yaml: {image} is not the project image"
    assert checked >= 6


def test_dockerfile_installs_the_pinned_torch_from_the_pytorch_index():
    """One Dockerfile, two builds: TORCH_VARIANT=cpu (default) and the CUDA build of the same torch pin."""
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.M))
    assert args["TORCH_VERSION"] == PINS["torch"], f"Dockerfile torch {args['TORCH_VERSION']} vs {PINS['torch']}"
    assert args["TORCH_VARIANT"] == "cpu"
    install = re.search(r'pip install[^\n]*"torch==\$\{TORCH_VERSION\}"\s*\\\s*\n\s*--index-url\s+"([^"]+)"', DOCKERFILE)
    assert install, "torch==${TORCH_VERSION} must be installed from the PyTorch index of ${TORCH_VARIANT}"
    assert install.group(1) == "https://download.pytorch.org/whl/${TORCH_VARIANT}"
    assert DOCKERFILE.index("torch==${TORCH_VERSION}") < DOCKERFILE.index('-e ".[${EXTRAS}]"')  # torch first
    # The documented GPU build: the pinned Ray GPU base and a CUDA variant of the PyTorch index.
    gpu = re.search(r"--build-arg RAY_IMAGE=rayproject/ray:(\S+)-gpu\s*\\?\s*#?\s*--build-arg TORCH_VARIANT=(cu\d+)",
                    DOCKERFILE)
    assert gpu and gpu.group(1).startswith(PINS["ray"]), "document the GPU build (RAY_IMAGE ...-gpu, TORCH_VARIANT=cuXYZ)"


def test_launcher_nodes_boot_a_current_gpu_ami_and_declare_their_gpus():
    from components.training.devices import launcher_max_gpus

    text = (INFRA / "cluster-launcher" / "aws.yaml").read_text()
    (cfg,) = _docs(INFRA / "cluster-launcher" / "aws.yaml")
    for name, node in cfg["available_node_types"].items():
        ami = node["node_config"].get("ImageId", "")
        # A pinned AMI id, or AWS's public SSM parameter of the current Deep Learning Base AMI (never Ray's
        # fallback, an old Deep Learning AMI whose driver may not run a current CUDA torch).
        assert re.fullmatch(r"ami-[0-9a-f]{8,17}|resolve:ssm:/aws/service/deeplearning/ami/\S+/ami-id", ami), (name, ami)
        assert "GPU" in node["resources"], f"{name}: declare resources.GPU (use_gpu: auto reads it)"
    assert launcher_max_gpus(text) == sum(t["resources"]["GPU"] * t.get("max_workers", 1)
                                          for t in cfg["available_node_types"].values()) > 0
    for cmd in cfg["setup_commands"]:
        if "pip install" in cmd:
            assert "--no-deps" in cmd, f"aws.yaml setup installs dependencies the image carries: {cmd}"


def test_max_gpus_in_configmap_is_the_gpu_groups_size():
    (cluster,) = _by_kind("RayCluster")
    most = sum(int(g["maxReplicas"]) * int(g["rayStartParams"]["num-gpus"])
               for g in cluster["spec"]["workerGroupSpecs"] if g["rayStartParams"].get("num-gpus"))
    (cm,) = [c for c in _by_kind("ConfigMap") if c["metadata"]["name"] == "eulernet-env"]
    from components.training.devices import MAX_GPUS_ENV

    assert int(cm["data"][MAX_GPUS_ENV]) == most > 0


def test_rayservice_has_a_gpu_variant_on_a_gpu_worker_group():
    from components.serving.config import ServeConfig, read_serve_config

    (service,) = _by_kind("RayService")
    groups = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    gpu_groups = [g for g in groups if g["rayStartParams"].get("num-gpus")]
    assert gpu_groups and all(g["minReplicas"] == 0 for g in gpu_groups), "a GPU worker group, scaling from zero"
    served = _embedded(service, "serveConfigV2")
    gpu_apps = [a for a in served["applications"] if str(a.get("args", {}).get("device", "cpu")).startswith("cuda")]
    assert gpu_apps, "a GPU variant of the application (args.device: cuda)"
    for app in gpu_apps:
        f = read_serve_config(service["spec"]["serveConfigV2"], app["name"])
        want = ServeConfig(device=f.args["device"], num_gpus=f.args.get("num_gpus")).gpus
        assert 0 < want <= max(int(g["rayStartParams"]["num-gpus"]) for g in gpu_groups)
        assert f.deployment["ray_actor_options"]["num_gpus"] == want, app["name"]


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

    # The cluster serves every local application (plus its GPU variant, see the test below).
    assert {k: v for k, v in shape(served).items() if k in shape(local)} == shape(local), \
        "update infra/kuberay/rayservice.yaml serveConfigV2 from serve_config.yaml"
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
    # Both commands take the database URI (it holds a password) from the environment: k8s from the Secret
    # mlflow-db the operator creates (not shipped), compose from its own environment. Resolve them.
    assert {"secretRef": {"name": "mlflow-db"}} in container["envFrom"]
    k8s_command = " ".join(container["args"]).replace(
        '"$MLFLOW_BACKEND_STORE_URI"', "postgresql://mlflow:PW@mlflow-postgres:5432/mlflow")
    service = compose["services"]["mlflow"]
    compose_command = service["command"].replace("$${MLFLOW_BACKEND_STORE_URI}",
                                                 service["environment"]["MLFLOW_BACKEND_STORE_URI"])
    commands = {
        "k8s": (container["image"], k8s_command),
        "compose": (service["image"], compose_command),
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


def test_serving_path_imports_without_pipeline_packages():
    """What a `[serve]` install lacks is never imported on the serving path (checked, not assumed)."""
    import subprocess
    import sys

    code = (
        "import importlib.abc, sys\n"
        "BLOCKED = {'great_expectations', 'dvc', 'face_alignment', 'matplotlib', 'skvideo'}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'{name} is not in the serving install')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import numpy as np\n"
        "import components.serving.app, components.registry.load, components.registry.pyfunc\n"
        "from components.inference.checkpoint import build_meta, make_checkpoint\n"
        "from components.inference.predictor import Predictor\n"
        "from components.model.eulernet import create_model\n"
        "p = Predictor.from_checkpoint(make_checkpoint(create_model('eulernet', width=0.125),\n"
        "                              build_meta(variant='eulernet', crop_size=32)))\n"
        "p.get_backend()\n"
        "print(p.score_clips(np.zeros((1, 4, 32, 32, 3), np.uint8)).shape)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "(1,)"


# ------------------------------------------------------------------------------------------ locked-down infra
# (issue 13, item 6) Nobody in: no default credential, loopback-only ports, MLflow behind its basic-auth app,
# Ray token auth and no dashboard on 0.0.0.0. These check properties, not only that the files parse.
COMPOSE = INFRA / "mlflow" / "docker-compose.yaml"
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<var>\w+)(?P<op>:?[-?+=])?(?P<arg>[^}]*)\}")


def _compose_interpolate(text: str, env: dict[str, str]) -> str:
    """docker compose's variable interpolation (``$$`` escapes; ``${VAR:?msg}`` refuses when VAR is unset/empty)."""
    def sub(m: re.Match) -> str:
        var, op, arg = m.group("var"), m.group("op") or "", m.group("arg")
        value = env.get(var, "")
        if op in (":?", "?") and not value:
            raise ValueError(f"required variable {var} is missing a value: {arg}")
        if op in (":-", "-") and not value:
            return arg
        return value
    return INTERPOLATION.sub(sub, text)


COMPOSE_ENV = {"MLFLOW_DB_PASSWORD": "db-pw", "AWS_ACCESS_KEY_ID": "s3-user", "AWS_SECRET_ACCESS_KEY": "s3-secret",
               "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "admin-pw"}


def test_compose_refuses_to_start_without_credentials_and_ships_none():
    text = COMPOSE.read_text()
    uses = list(INTERPOLATION.finditer(text))
    assert uses, "credentials come from the environment"
    for m in uses:  # every variable is required (":?"), none has a fallback value
        assert m.group("op") == ":?" and m.group("arg").strip(), f"{m.group(0)}: use ${{VAR:?message}}"
    with pytest.raises(ValueError, match="required variable MLFLOW_DB_PASSWORD"):
        _compose_interpolate(text, {k: v for k, v in COMPOSE_ENV.items() if k != "MLFLOW_DB_PASSWORD"})
    for missing in COMPOSE_ENV:
        with pytest.raises(ValueError, match=f"required variable {missing}"):
            _compose_interpolate(text, {k: v for k, v in COMPOSE_ENV.items() if k != missing})
    compose = yaml.safe_load(_compose_interpolate(text, COMPOSE_ENV))
    secretish = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|ROOT_USER|ADMIN_USER|STORE_URI")
    raw = yaml.safe_load(text)
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if secretish.search(key):  # the value is (or embeds) a required variable, never a literal
                assert INTERPOLATION.search(str(value)), f"{name}.{key} = {value!r} is a default credential"
    resolved = compose["services"]
    assert resolved["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"] == \
        "postgresql://mlflow:db-pw@postgres:5432/mlflow"


def test_compose_publishes_on_loopback_only_and_mlflow_requires_a_user():
    compose = yaml.safe_load(_compose_interpolate(COMPOSE.read_text(), COMPOSE_ENV))
    published = 0
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
            published += 1
    assert published >= 3  # MLflow, MinIO API and console
    mlflow = compose["services"]["mlflow"]
    assert "--allowed-hosts" not in mlflow["command"], "MLflow's default (localhost + private) guards the Host"
    assert re.search(r"mlflow server\s+--app-name basic-auth\b", mlflow["command"])
    assert "Flask-WTF" in mlflow["command"]  # what the auth app needs beyond the stock image
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == "admin" and env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "admin-pw"
    assert any(v.endswith(f":{mlflow['working_dir']}") for v in mlflow["volumes"]), "auth users must persist"


def test_mlflow_auth_environment_variables_are_the_ones_mlflow_reads():
    from mlflow.environment_variables import (
        MLFLOW_AUTH_ADMIN_PASSWORD,
        MLFLOW_AUTH_ADMIN_USERNAME,
        MLFLOW_AUTH_CONFIG_PATH,
    )

    names = {MLFLOW_AUTH_ADMIN_USERNAME.name, MLFLOW_AUTH_ADMIN_PASSWORD.name, MLFLOW_AUTH_CONFIG_PATH.name}
    assert names == {"MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_CONFIG_PATH"}
    k8s = (INFRA / "mlflow" / "k8s.yaml").read_text()
    for name in names:
        assert name in k8s
    for name in names - {MLFLOW_AUTH_CONFIG_PATH.name}:
        assert name in COMPOSE.read_text()


def test_k8s_mlflow_ships_no_credentials_and_runs_basic_auth():
    docs = _docs(INFRA / "mlflow" / "k8s.yaml")
    assert not [d for d in docs if d["kind"] == "Secret"], "credentials are created by the operator, not shipped"
    assert "REPLACE_ME" not in (INFRA / "mlflow" / "k8s.yaml").read_text()
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "mlflow"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = " ".join(container["args"])
    assert re.search(r"mlflow server\s+--app-name basic-auth\b", command) and "Flask-WTF" in command
    assert "'*'" not in command and '"*"' not in command
    refs = {r["secretRef"]["name"] for r in container["envFrom"]}
    assert refs == {"mlflow-db", "mlflow-s3"}
    env = {e["name"]: e for e in container["env"]}
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "mlflow-auth" and not ref.get("optional", False)
    (volume,) = [v for v in pod["volumes"] if v["name"] == "auth-config"]
    assert volume["secret"]["secretName"] == "mlflow-auth" and not volume["secret"].get("optional", False)
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "auth-config"]
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"].startswith(mount["mountPath"] + "/")
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"  # the route the auth app leaves open
    for d in docs:  # nothing else carries a literal password either
        for c in (d["spec"].get("template", {}).get("spec", {}).get("containers", [])):
            for e in c.get("env", []):
                assert "value" not in e or not re.search(r"PASSWORD|SECRET", e["name"]), e


def _ray_clusters() -> list[tuple[str, dict]]:
    return [(o["metadata"]["name"], o["spec"].get("rayClusterConfig", o["spec"]))
            for o in [*_by_kind("RayCluster"), *_by_kind("RayService")]]


def test_kuberay_clusters_use_token_auth_and_keep_the_dashboard_off_0_0_0_0():
    clusters = _ray_clusters()
    assert len(clusters) >= 2
    for name, spec in clusters:
        assert spec.get("authOptions", {}).get("mode") == "token", f"{name}: Ray token auth off"
        head = spec["headGroupSpec"]
        host = str(head["rayStartParams"].get("dashboard-host", ""))
        assert host and host not in ("0.0.0.0", "::", "[::]"), f"{name}: dashboard-host {host!r}"
        (container,) = head["template"]["spec"]["containers"]
        m = re.fullmatch(r"\$\((\w+)\)", host)
        if m:  # a kubelet-expanded variable: the head pod's own IP
            (var,) = [e for e in container.get("env", []) if e["name"] == m.group(1)]
            assert var["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", var
            for probe in ("readinessProbe", "livenessProbe"):  # KubeRay's default would ask localhost:8265
                cmd = " ".join(container[probe]["exec"]["command"])
                assert f"${m.group(1)}:8265" in cmd and "localhost:8265" not in cmd, (name, probe)
        serving = name in {o["metadata"]["name"] for o in _by_kind("RayService")}
        for _, _, c in _containers({"spec": spec}):
            refs = {r.get("secretRef", {}).get("name") for r in c.get("envFrom", [])}
            # Serving reads the registry only: its own READ-only MLflow user and no S3 secret at all.
            want = "eulernet-mlflow-serving" if serving else "eulernet-mlflow"
            assert want in refs, f"{name}/{c['name']}: no MLflow credentials ({want}) for the auth app"
            if serving:
                assert not refs & {"eulernet-s3", "eulernet-mlflow"}, f"{name}/{c['name']}: serving holds {refs}"


def test_serving_pods_load_their_api_keys_from_a_mounted_secret():
    """Replicas refuse to start without a key (serve.allow_anonymous stays off in the cluster), so every serving
    container mounts the Secret and points EULERNET_API_KEY_FILE into it; no key sits in the Serve config."""
    (svc,) = _by_kind("RayService")
    spec = svc["spec"]["rayClusterConfig"]
    assert "allow_anonymous" not in svc["spec"]["serveConfigV2"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
            path = env.get("EULERNET_API_KEY_FILE")
            assert path, f"{c['name']}: no EULERNET_API_KEY_FILE"
            (mount,) = [m for m in mounts.values() if path.startswith(m["mountPath"] + "/")]
            assert mount.get("readOnly") is True and volumes[mount["name"]]["secret"]["secretName"]


def test_launcher_uses_token_auth_and_a_loopback_dashboard():
    from ray._private.authentication.authentication_token_setup import AUTH_MODE_ENV_VAR

    (cfg,) = _docs(INFRA / "cluster-launcher" / "aws.yaml")
    text = (INFRA / "cluster-launcher" / "aws.yaml").read_text()
    assert "0.0.0.0" not in text
    head = " ".join(cfg["head_start_ray_commands"])
    workers = " ".join(cfg["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    for where, cmds in (("head", head), ("worker", workers)):
        start = re.search(r"(\S+=\S+\s+)*ray start", cmds)
        assert start and f"{AUTH_MODE_ENV_VAR}=token" in start.group(0), f"{where}: ray start without token auth"
        token_path = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+)", start.group(0)).group(1)
        assert token_path in cfg["file_mounts"], f"{where}: {token_path} is not copied to the nodes"
    assert f"export {AUTH_MODE_ENV_VAR}=token" in " ".join(cfg["head_setup_commands"])  # drivers on the head
    for remote, local in cfg["file_mounts"].items():
        if remote != "/home/ray/eulernet":
            assert local.startswith("~/"), f"{remote}: secrets come from the operator's machine, not the repo"
