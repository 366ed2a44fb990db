from dataclasses import dataclass, field
from typing import Literal

import pytest

from components.config import ConfigError, build, load_section


@dataclass(frozen=True)
class Inner:
    size: int = 8


@dataclass(frozen=True)
class Example:
    name: str
    lr: float = 1e-4
    mode: Literal["eer", "min_acer"] = "eer"
    gpu: bool | None = None
    sizes: list[int] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError("lr must be > 0")


def test_builds_nested_and_coerces_yaml_scientific_strings():
    cfg = build(Example, {"name": "a", "lr": "1e-3", "sizes": [1, 2], "inner": {"size": 4}})
    assert cfg.lr == pytest.approx(1e-3) and cfg.sizes == [1, 2] and cfg.inner.size == 4


@pytest.mark.parametrize(
    "values, message",
    [
        ({"name": "a", "lr_rate": 1}, "unknown key(s) ['lr_rate']"),
        ({"name": 3}, "name: expected a string"),
        ({"name": "a", "mode": "best"}, "not one of ['eer', 'min_acer']"),
        ({"name": "a", "sizes": [1, "x"]}, "sizes[1]: expected an integer"),
        ({"name": "a", "gpu": "yes"}, "gpu"),
        ({"name": "a", "inner": {"size": 2, "depth": 1}}, "inner: unknown key(s) ['depth']"),
        ({"name": "a", "lr": -1.0}, "lr must be > 0"),
        ({}, "name"),
    ],
)
def test_rejects_bad_values_naming_the_key(values, message):
    with pytest.raises(ConfigError) as err:
        build(Example, values, "train")
    assert message in str(err.value)


def test_load_section_reads_yaml_and_names_missing_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  name: x\n  lr: 0.5\n")
    assert load_section(Example, "train", p).lr == 0.5
    with pytest.raises(ConfigError, match="no section 'serve'"):
        load_section(Example, "serve", p)
    with pytest.raises(ConfigError, match="not found"):
        load_section(Example, "train", tmp_path / "missing.yaml")


def test_repository_params_file_is_a_mapping_of_known_sections():
    from components.config import read_params

    params = read_params("params.yaml")
    assert {"data", "validate", "label", "train", "evaluate", "register", "serve"} <= set(params)


# ------------------------------------------------------------------ the repository's own config files
def test_params_yaml_builds_every_section():
    from components.config import SECTIONS, load_params

    built = load_params("params.yaml")
    assert set(built) == set(SECTIONS)
    assert type(built["train"]).__name__ == "TrainConfig" and type(built["serve"]).__name__ == "ServeConfig"


def test_unknown_section_and_duplicate_key_are_errors(tmp_path):
    from components.config import read_params

    (tmp_path / "typo.yaml").write_text("labels:\n  crop_size: 64\n")
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['labels'\]"):
        read_params(tmp_path / "typo.yaml")
    (tmp_path / "dup.yaml").write_text("train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match="duplicate key 'lr' at line 4"):
        read_params(tmp_path / "dup.yaml")


def _rayservice_serve_file(app_name: str = "eulernet"):
    import yaml

    from components.serving.config import read_serve_config

    docs = list(yaml.safe_load_all(open("infra/kuberay/rayservice.yaml")))
    service = next(d for d in docs if d and d.get("kind") == "RayService")
    return read_serve_config(service["spec"]["serveConfigV2"], app_name)


def test_serve_settings_have_one_source():
    """params.yaml `serve:` is the source; both Serve files that deploy the app must hold the same values."""
    from components.serving.config import ServeConfig, disagreements, read_serve_config

    cfg = load_section(ServeConfig, "serve", "params.yaml")
    local = read_serve_config("infra/serve_config.yaml")
    cluster = _rayservice_serve_file()
    assert disagreements(cfg, local, "infra/serve_config.yaml") == []
    assert disagreements(cfg, cluster, "rayservice.yaml") == []
    assert local.args and local.user_config and cluster.args and cluster.user_config  # something was compared
    # The GPU variant differs from params.yaml in its GPU keys only (device, num_gpus), and reserves its GPUs.
    import dataclasses

    gpu = _rayservice_serve_file("eulernet-gpu")
    gpu_keys = {k: gpu.args[k] for k in ("device", "num_gpus") if k in gpu.args}
    assert gpu_keys.get("device", "").startswith("cuda")
    assert disagreements(dataclasses.replace(cfg, **gpu_keys), gpu, "rayservice.yaml eulernet-gpu") == []
    assert gpu.deployment["ray_actor_options"]["num_gpus"] > 0


def test_serve_file_gpu_reservation_must_match_its_device():
    import dataclasses

    from components.serving.config import ServeConfig, disagreements, read_serve_config

    cfg = load_section(ServeConfig, "serve", "params.yaml")
    text = open("infra/serve_config.yaml").read()
    # A cuda replica whose ray_actor_options reserve no GPU would land on GPU 0 beside every other replica.
    cuda = read_serve_config(text.replace("max_resolution: 1920 ", "max_resolution: 1920\n      device: cuda "))
    assert cuda.args["device"] == "cuda"
    assert disagreements(dataclasses.replace(cfg, device="cuda"), cuda) == [
        "serve config ray_actor_options.num_gpus = 0 but device 'cuda' needs 1 (serve num_gpus)"]
    # A cpu replica reserving a GPU wastes it.
    wasted = read_serve_config(text.replace("num_cpus: 1 ", "num_gpus: 1\n          num_cpus: 1 "))
    assert wasted.deployment["ray_actor_options"]["num_gpus"] == 1
    assert disagreements(cfg, wasted) == ["serve config ray_actor_options.num_gpus = 1 but device 'cpu' needs 0 "
                                          "(serve num_gpus)"]


def test_serve_disagreement_is_named(tmp_path):
    import dataclasses

    from components.serving.config import ServeConfig, disagreements, read_serve_config

    cfg = load_section(ServeConfig, "serve", "params.yaml")
    text = open("infra/serve_config.yaml").read().replace("max_clips: 4", "max_clips: 6")
    drifted = read_serve_config(text)
    assert disagreements(cfg, drifted) == ["serve config user_config.max_clips = 6 but params.yaml serve.max_clips = 4"]
    other = dataclasses.replace(cfg, max_frames=200)
    assert any("args.max_frames = 300" in d for d in disagreements(other, read_serve_config("infra/serve_config.yaml")))


def test_speed_only_label_keys_change_neither_the_cache_key_nor_the_recorded_config(tmp_path):
    from components.labeling.config import LabelConfig, read_label_config, write_label_config

    slow = LabelConfig(crop_size=64, concurrency=1, batch_size=1, num_cpus_per_worker=1.0)
    fast = LabelConfig(crop_size=64, concurrency=8, batch_size=16, num_cpus_per_worker=0.5)
    assert slow.fingerprint() == fast.fingerprint()
    assert LabelConfig(crop_size=96).fingerprint() != slow.fingerprint()
    a = write_label_config(tmp_path / "a", slow).read_bytes()
    b = write_label_config(tmp_path / "b", fast).read_bytes()
    assert a == b and b"concurrency" not in a
    assert read_label_config(tmp_path / "a").crop_size == 64
