"""TrainConfig checks, params.yaml round trip, provenance helpers and the ablation table (no Ray needed)."""
from __future__ import annotations

import pandas as pd
import pytest

from components.training.config import TrainConfig


def test_defaults_follow_the_paper_and_variant_picks_the_label():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.batch_size, cfg.variant, cfg.label_type) == (1e-4, 16, "baseline", "location_map")
    assert TrainConfig(variant="c1").label_type == "binary_mask"
    assert TrainConfig(variant="c2").label_type == "depth_map"
    assert TrainConfig(variant="c1", label_type="depth_map").label_type == "depth_map"
    assert TrainConfig(num_workers=4, batch_size=16).per_worker_batch == 4


@pytest.mark.parametrize("kw, msg", [
    ({"epochs": 0}, "epochs"), ({"lr": 0.0}, "lr"), ({"num_workers": 0}, "num_workers"),
    ({"batch_size": 1, "num_workers": 2}, "batch_size"), ({"variant": "c9"}, "unknown variant"),
    ({"label_type": "mask"}, "label_type"), ({"use_gpu": "yes"}, "use_gpu"),
    ({"threshold_rule": "best"}, "threshold_rule"), ({"cpus_per_worker": 0.0}, "cpus_per_worker"),
])
def test_bad_values_are_rejected_with_the_field_named(kw, msg):
    with pytest.raises(ValueError, match=msg):
        TrainConfig(**kw)


def test_repo_params_sections_load():
    from components.config import ConfigError, build, load_section
    from components.metrics.evaluate import EvalConfig

    cfg = load_section(TrainConfig, "train", "params.yaml")
    assert cfg.use_gpu == "auto" and cfg.label_type == "location_map"
    assert cfg.threshold_rule in ("eer", "min_acer")  # the one threshold rule: evaluate has none of its own
    assert load_section(EvalConfig, "evaluate", "params.yaml").gradcam_clips >= 0
    with pytest.raises(ConfigError, match="unknown key"):
        build(TrainConfig, {"epoch": 3}, "train")
    with pytest.raises(ConfigError, match="unknown key"):  # a params file from before the threshold was chosen once
        build(EvalConfig, {"threshold_rule": "eer"}, "evaluate")


def test_provenance_helpers(tmp_path, monkeypatch):
    from components.runtime import (
        absolute_tracking_uri,
        dvc_data_hash,
        git_commit,
        provenance_tags,
        storage_root,
        tracking_uri,
    )

    (tmp_path / "data.dvc").write_text("outs:\n- md5: abc123.dir\n  path: sample\n")
    assert dvc_data_hash(tmp_path / "data.dvc") == "abc123.dir"
    assert dvc_data_hash(tmp_path / "none.dvc") == "unknown"
    assert git_commit(tmp_path) == "unknown"  # not a repository: tolerated
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri(tmp_path) == "http://mlflow:5000"
    monkeypatch.chdir(tmp_path)
    assert absolute_tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/mlflow.db"
    assert absolute_tracking_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///rel.db")  # relative in the env: still made absolute
    assert tracking_uri() == f"sqlite:///{tmp_path}/rel.db"
    assert provenance_tags("train", tmp_path)["stage"] == "train"
    monkeypatch.delenv("EULERNET_STORAGE", raising=False)
    assert storage_root() == str(tmp_path / "artifacts")
    monkeypatch.setenv("EULERNET_STORAGE", "s3://bucket/prefix/")
    assert storage_root() == "s3://bucket/prefix"


def test_ablation_table_mean_and_std_over_seeds():
    from components.training.ablation import ablation_table

    runs = pd.DataFrame([
        {"variant": "baseline", "seed": 0, "label_type": "location_map", "fcam": True,
         "fusion": "residual_pyramid", "dev_acer": 0.02, "test_acer": 0.01},
        {"variant": "baseline", "seed": 1, "label_type": "location_map", "fcam": True,
         "fusion": "residual_pyramid", "dev_acer": 0.04, "test_acer": 0.03},
        {"variant": "c2", "seed": 0, "label_type": "depth_map", "fcam": False, "fusion": "concat",
         "dev_acer": 0.10, "test_acer": None},
    ])
    md = ablation_table(runs)
    lines = md.splitlines()
    assert lines[-2] == "| Compare 2 | Depth Map | × | × | 10.00 ± 0.00 | n/a |"  # Table I order: C2 before Baseline
    assert lines[-1] == "| Baseline | Face Location Map | √ | √ | 3.00 ± 1.41 | 2.00 ± 1.41 |"
