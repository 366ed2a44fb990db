"""Great Expectations gates: pass on the embedded sample, fail on datasets built to break each gate."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from components.data.manifest import read_manifest
from components.quality.gates import GateConfig, run_gates

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"


def _cfg(**kw) -> GateConfig:
    # The params.yaml thresholds of the embedded sample.
    params = yaml.safe_load((REPO / "params.yaml").read_text())["validate"]
    return GateConfig(**{**params, **kw})


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    return read_manifest(SAMPLE / "manifest.csv")


@pytest.fixture(scope="module")
def sample_report(sample, tmp_path_factory):
    docs = tmp_path_factory.mktemp("docs")
    return run_gates(sample, _cfg(), data_root=SAMPLE, docs_dir=docs), docs


def test_sample_passes_every_gate_and_builds_data_docs(sample_report):
    report, docs = sample_report
    assert report.success, report.failures
    assert report.failures == []
    gates = {r["gate"] for r in report.results}
    assert {"schema", "allowed values", "device share", "scene share", "live ratio per device",
            "live ratio per scene", "min videos per cell", "subject in one split",
            "video readable with enough frames", "duplicate content"} <= gates
    assert all(r["success"] for r in report.results)
    assert (report.table["frames_read"] == 10).all() and report.table["sha256"].str.len().eq(64).all()
    assert "PASSED" in report.summary
    index = docs / "index.html"
    assert index.is_file() and "manifest_gates" in index.read_text()
    assert list(docs.glob("validations/manifest_gates/**/*.html"))


def _failures(report, gate: str) -> list[str]:
    return [f for f in report.failures if f.startswith(gate)]


def test_unbalanced_device_fails(sample):
    # Keep only 2 of android_lowend's 20 videos: its share drops to 2/42 < 15%.
    lowend = sample[sample["device"] == "android_lowend"]
    df = pd.concat([sample[sample["device"] != "android_lowend"], lowend.head(2)])
    report = run_gates(df, _cfg(check_videos=False), data_root=SAMPLE)
    assert not report.success
    share = _failures(report, "device share")
    assert share == ["device share [expect_table_row_count_to_be_between] device=android_lowend: "
                     "2 of 42 videos (5%), allowed 15%..60%"]
    assert any("min videos per cell" in f and "device=android_lowend, scene=indoor, label=attack" in f
               for f in report.failures)


def test_missing_scene_fails(sample):
    df = sample[sample["scene"] != "outdoor"]
    report = run_gates(df, _cfg(check_videos=False), data_root=SAMPLE)
    assert not report.success
    assert any(f.startswith("scene share") and "scene=outdoor: 0 of 30 videos" in f for f in report.failures)
    assert any(f.startswith("live ratio per scene") and "scene=outdoor: live ratio no videos" in f
               for f in report.failures)
    cells = _failures(report, "min videos per cell")
    assert len(cells) == 6  # 3 devices x outdoor x {live, attack}


def test_live_ratio_per_device_fails(sample):
    # Drop every live video of iphone_12: its live ratio becomes 0.
    df = sample[~((sample["device"] == "iphone_12") & (sample["label"] == 1))]
    report = run_gates(df, _cfg(check_videos=False), data_root=SAMPLE)
    assert any(f.startswith("live ratio per device") and "device=iphone_12: live ratio 0.00, allowed 0.20..0.80"
               in f for f in report.failures)


def test_leaked_subject_fails(sample):
    df = sample.copy()
    df.loc[df["subject_id"] == "s003", "split"] = ["train"] + ["dev"] * (int((df["subject_id"] == "s003").sum()) - 1)
    report = run_gates(df, _cfg(check_videos=False), data_root=SAMPLE)
    assert _failures(report, "subject in one split") == [
        "subject in one split [expect_column_values_to_be_in_set]: s003 in dev+train"]


def test_unknown_values_and_missing_split_fail(sample):
    df = sample.copy()
    df.loc[0, "attack_type"] = "hologram"
    df = df[df["split"] != "dev"]
    report = run_gates(df, _cfg(check_videos=False), data_root=SAMPLE)
    assert any(f.startswith("allowed values") and "s000_android_lowend_indoor_live_00 (attack_type=hologram)" in f
               for f in report.failures)
    assert any(f.startswith("split present") and "split=dev: 0 videos" in f for f in report.failures)


def test_schema_gate_names_missing_columns_and_empty_values(sample):
    report = run_gates(sample.drop(columns=["scene"]), _cfg(check_videos=False), data_root=SAMPLE)
    assert report.failures == ["schema [expect_table_columns_to_match_set]: missing columns ['scene']"]
    df = sample.copy()
    df.loc[3, "device"] = ""
    report = run_gates(df, _cfg(check_videos=False), data_root=SAMPLE)
    assert any(f.startswith("schema [expect_column_values_to_not_be_null]") and df["video_id"][3] in f
               for f in report.failures)


@pytest.fixture()
def small_copy(sample, tmp_path):
    """Two videos per (device, scene, label) cell of the sample, copied so they can be damaged."""
    df = sample.groupby(["device", "scene", "label"]).head(2).reset_index(drop=True)
    for p in df["path"]:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / p, tmp_path / p)
    return df, tmp_path


def test_unreadable_and_short_videos_fail(small_copy):
    df, root = small_copy
    (root / df["path"][0]).write_bytes(b"not a video at all")
    from components.data.video import read_frames, write_video

    write_video(root / df["path"][1], read_frames(root / df["path"][1], max_frames=5), 25)
    (root / df["path"][2]).unlink()
    report = run_gates(df, _cfg(min_per_cell=2, require_splits=["train"]), data_root=root)
    assert not report.success
    (status,) = [f for f in report.failures if "video_status" in f]
    assert f"{df['video_id'][0]} (video_status=not_a_video)" in status
    assert f"{df['video_id'][1]} (video_status=too_short)" in status
    assert f"{df['video_id'][2]} (video_status=missing)" in status
    (frames,) = [f for f in report.failures if "frames_read" in f]
    assert f"{df['video_id'][1]} (frames_read=5)" in frames


def test_duplicate_content_fails(small_copy):
    df, root = small_copy
    dup = df.iloc[[0]].copy()
    dup["video_id"], dup["path"] = "renamed_copy", "videos/renamed_copy.mp4"
    shutil.copy(root / df["path"][0], root / "videos/renamed_copy.mp4")
    report = run_gates(pd.concat([df, dup], ignore_index=True), _cfg(min_per_cell=2, require_splits=["train"]),
                       data_root=root)
    assert not report.success
    (f,) = report.failures
    assert f.startswith("duplicate content [expect_column_values_to_be_unique]")
    assert df["video_id"][0] in f and "renamed_copy" in f


def summary_failures(out):
    return json.loads((out / "summary.json").read_text())["failures"]


def test_validate_flow_exit_codes_and_outputs(tmp_path, monkeypatch, sample):
    from flows.cli import main

    monkeypatch.chdir(REPO)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"validate": {**_cfg().__dict__, "check_videos": False}}))
    manifest = tmp_path / "manifest.csv"
    bad = sample[sample["scene"] != "outdoor"].copy()
    bad["path"] = "data/sample/" + bad["path"]
    bad.to_csv(manifest, index=False)
    out = tmp_path / "quality"
    rc = main(["validate", "--params", str(params), "--manifest", str(manifest), "--out", str(out),
               "--headline", str(tmp_path / "quality.json")])
    assert rc == 1
    assert json.loads((tmp_path / "quality.json").read_text()) == {"passed": 0, "videos": len(bad),
                                                                    "failed": len(summary_failures(out))}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["success"] is False and any("scene=outdoor" in f for f in summary["failures"])
    assert "FAILED" in (out / "summary.txt").read_text()
    assert (out / "data_docs" / "index.html").is_file()
    params.write_text(yaml.safe_dump({"validate": {"live_ratio": [0.9, 0.1]}}))
    assert main(["validate", "--params", str(params), "--manifest", str(manifest), "--out", str(out)]) == 2


def test_gates_are_enforced_where_data_is_consumed(tmp_path):
    """A verdict counts only if it exists, passed, and is about exactly this manifest; shards carry it on."""
    import json

    from components.quality.gates import (
        GateError,
        manifest_digest,
        require_passed,
        require_shards_passed,
        write_gate_record,
    )

    manifest = tmp_path / "manifest.csv"
    manifest.write_text("video_id,path\nv1,a.mp4\n")
    summary = tmp_path / "summary.json"
    with pytest.raises(GateError, match="run `eulernet validate` first"):
        require_passed(summary, manifest)
    summary.write_text(json.dumps({"success": False, "failures": ["x"], "manifest_sha256": manifest_digest(manifest)}))
    with pytest.raises(GateError, match="FAILED"):
        require_passed(summary, manifest)
    summary.write_text(json.dumps({"success": True, "failures": [], "manifest_sha256": manifest_digest(manifest)}))
    assert require_passed(summary, manifest) == manifest_digest(manifest)

    shards = tmp_path / "shards"
    with pytest.raises(GateError, match="has no gates.json"):
        require_shards_passed(shards, summary)
    write_gate_record(shards, manifest, passed=False)
    with pytest.raises(GateError, match="--skip-gates"):
        require_shards_passed(shards, summary)
    write_gate_record(shards, manifest, passed=True)
    assert require_shards_passed(shards, summary) == manifest_digest(manifest)
    manifest.write_text("video_id,path\nv1,a.mp4\nv2,b.mp4\n")  # the data moved on after labeling
    with pytest.raises(GateError, match="another manifest"):
        require_shards_passed(shards, summary)
