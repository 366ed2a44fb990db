"""`eulernet evaluate` on tiny shards: the checkpoint's dev-chosen threshold applied to dev and test, all declared
outputs, no crash when a split lacks a class, an error when the checkpoint carries no threshold."""
from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from test_train_shards import write_tiny_shards


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from components.inference.checkpoint import build_meta, save_checkpoint
    from components.model.eulernet import create_model

    torch.manual_seed(0)
    model = create_model("baseline", width=0.125)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_checkpoint(path, model, build_meta(variant="baseline", crop_size=32, clip_len=4, clip_interval=3,
                                            threshold=0.42, extra={"threshold_rule": "min_acer"}))
    return path


def _run(tmp_path, checkpoint, shards):
    from flows import evaluate as flow

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"gradcam_clips": 1}}))
    out = tmp_path / "eval"
    from flows.errors import StageError

    try:
        rc = flow.run(argparse.Namespace(params=str(params), checkpoint=str(checkpoint), shards=str(shards),
                                         out=str(out), headline=str(tmp_path / "metrics" / "eval.json"),
                                         skip_gates=True))  # these shards never went through validate
    except StageError as exc:  # what `eulernet evaluate` prints and exits with
        rc = exc.code
    return rc, out


def test_evaluate_applies_the_checkpoints_threshold_to_dev_and_test(tmp_path, checkpoint, ray_session):
    """The threshold is chosen once, by training on dev, and carried in the checkpoint: evaluate applies it
    (recomputed here independently), it chooses none of its own."""
    from components.inference.predictor import Predictor
    from components.labeling.shards import load_clips
    from components.metrics import error_rates

    shards = write_tiny_shards(tmp_path / "shards", {"train": 2, "dev": 6, "test": 8}, seed=1)
    before = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    rc, out = _run(tmp_path, checkpoint, shards)
    assert rc == 0
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == before  # the train stage's output is untouched

    # recompute independently: Predictor clip scores -> per-video mean -> dev threshold -> test rates
    p = Predictor.from_checkpoint(checkpoint)
    def videos(split):
        c = load_clips(shards, split=split)
        df = pd.DataFrame({"video_id": c["video_id"], "label": c["label"], "score": p.score_clips(c["frames"])})
        return df.groupby("video_id").agg(score=("score", "mean"), label=("label", "first"))
    dev, test = videos("dev"), videos("test")
    t = p.threshold
    assert t == 0.42  # the fixture's checkpoint threshold
    expect, expect_dev = error_rates(test["score"], test["label"], t), error_rates(dev["score"], dev["label"], t)

    m = json.loads((out / "metrics.json").read_text())
    assert m["threshold"] == pytest.approx(t) and m["threshold_source"] == "dev"
    assert m["threshold_rule"] == "min_acer"  # what training recorded in the checkpoint
    for k in ("apcer", "bpcer", "acer", "hter"):
        assert m[k] == pytest.approx(expect[k]), k
        assert m["dev"][k] == pytest.approx(expect_dev[k]), k
    assert set(m["apcer_per_attack"]) == {"print", "replay"}
    assert m["apcer_worst"] == pytest.approx(max(m["apcer_per_attack"].values()))
    assert 0.0 <= m["auc"] <= 1.0 and m["dev"]["n_videos"] == 6 and m["test"]["n_videos"] == 8
    factors = {(b["factor"], b["value"]) for b in m["breakdown"]}
    assert {("device", "dev0"), ("device", "dev1"), ("attack_type", "live")} <= factors
    assert not (out / "threshold.json").exists()  # one source: metrics.json["threshold"]
    head = json.loads((tmp_path / "metrics" / "eval.json").read_text())  # the git-tracked headline numbers
    assert head["threshold"] == pytest.approx(m["threshold"], abs=1e-4)
    assert head["test_acer"] == pytest.approx(m["acer"], abs=1e-4) and head["dev_acer"] == pytest.approx(
        m["dev"]["acer"], abs=1e-4)

    vs = pd.read_csv(out / "video_scores.csv")
    assert len(vs) == 14 and vs.set_index("video_id").loc[test.index, "score"].to_numpy() == \
        pytest.approx(test["score"].to_numpy(), abs=1e-6)
    roc = pd.read_csv(out / "roc.csv")
    assert roc[["fpr", "tpr"]].iloc[0].tolist() == [0, 0] and roc[["fpr", "tpr"]].iloc[-1].tolist() == [1, 1]
    assert list(pd.read_csv(out / "det.csv").columns) == ["apcer", "bpcer", "threshold"]
    for f in ("roc.png", "det.png", "score_hist.png"):
        assert (out / "figures" / f).read_bytes()[:4] == b"\x89PNG"
    cams = sorted(p.name for p in (out / "figures" / "gradcam").glob("*.png"))
    assert len(cams) == 2 and sum(c.startswith("live_") for c in cams) == 1  # one live, one attack


def test_evaluate_refuses_shards_that_never_passed_the_gates(tmp_path, checkpoint, capsys):
    """Figures on data validate never passed are refused (exit 2, saying why) unless --skip-gates, and then the
    report says so (register tags the version, which no plain promotion then moves to champion)."""
    from flows import evaluate as flow
    from flows.errors import StageError

    shards = write_tiny_shards(tmp_path / "shards", {"train": 2, "dev": 6, "test": 8}, seed=1)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"gradcam_clips": 0}}))
    args = argparse.Namespace(params=str(params), checkpoint=str(checkpoint), shards=str(shards),
                              out=str(tmp_path / "eval"), headline=str(tmp_path / "eval.json"),
                              gates=str(tmp_path / "summary.json"), skip_gates=False)
    with pytest.raises(StageError, match="gates.json") as err:
        flow.run(args)
    assert err.value.code == 2 and not (tmp_path / "eval" / "metrics.json").exists()
    assert flow.run(argparse.Namespace(**{**vars(args), "skip_gates": True})) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["data_gates"] == "skipped"


def test_gradcam_maps_shapes_and_range(checkpoint):
    from components.inference.predictor import Predictor
    from components.metrics.gradcam import LAYERS, gradcam

    p = Predictor.from_checkpoint(checkpoint)
    clip = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    cams = gradcam(p, clip, live=True)
    for name in LAYERS:
        assert cams[name].shape == (4, 32, 32)
        assert cams[name].min() >= 0 and cams[name].max() <= 1 + 1e-6
    assert cams["map"].shape == (4, 4, 4)
    assert cams["score"] == pytest.approx(float(p.score_clips(clip[None])[0]), abs=1e-5)


def test_test_split_without_attacks_is_reported_and_dev_without_a_class_fails(tmp_path, checkpoint, ray_session):
    # test videos are all even-numbered -> all live
    shards = write_tiny_shards(tmp_path / "s1", {"dev": 4, "test": 1}, seed=2)
    rc, out = _run(tmp_path, checkpoint, shards)
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["apcer"] is None and m["acer"] is None and m["bpcer"] is not None
    assert "no attack" in m["note"]
    assert pd.read_csv(out / "roc.csv").empty  # declared plot file still exists

    shards2 = write_tiny_shards(tmp_path / "s2", {"dev": 1, "test": 4}, seed=3)
    (tmp_path / "x").mkdir()
    rc, out = _run(tmp_path / "x", checkpoint, shards2)
    assert rc == 0  # a dev split without attacks is reported as such: the threshold came from training
    m = json.loads((out / "metrics.json").read_text())
    assert m["dev"]["apcer"] is None and "no attack" in m["dev"]["note"] and m["acer"] is not None


def test_a_checkpoint_without_a_dev_chosen_threshold_is_refused(tmp_path):
    from components.inference.checkpoint import build_meta, save_checkpoint
    from components.model.eulernet import create_model
    from flows import evaluate as flow
    from flows.errors import StageError

    bare = save_checkpoint(tmp_path / "bare.pt", create_model("baseline", width=0.125),
                           build_meta(variant="baseline", crop_size=32, clip_len=4, clip_interval=3))
    shards = write_tiny_shards(tmp_path / "shards", {"dev": 2, "test": 2}, seed=4)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"gradcam_clips": 0}}))
    with pytest.raises(StageError, match="carries no threshold chosen on dev") as err:
        flow.run(argparse.Namespace(params=str(params), checkpoint=str(bare), shards=str(shards),
                                    out=str(tmp_path / "eval"), headline=str(tmp_path / "eval.json"),
                                    skip_gates=True))
    assert err.value.code == 2 and not (tmp_path / "eval" / "metrics.json").exists()
