"""The labeling stage on a real local Ray cluster: report, shards, content-addressed re-runs, the flow."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from components.labeling.config import LabelConfig
from components.labeling.pipeline import label_videos
from components.labeling.shards import SCHEMA_COLUMNS, ShardsError, load_clips, read_shards

CFG = LabelConfig(crop_size=64, clips_per_video=2, concurrency=2, max_side=256)


def _face_frames(img, n, side, cx, cy):
    frames = []
    for i in range(n):
        dx, dy = int(round(3 * np.sin(i / 3))), int(round(2 * np.cos(i / 4)))
        frames.append(img[cy - side // 2 + dy: cy + side // 2 + dy, cx - side // 2 + dx: cx + side // 2 + dx])
    return np.stack(frames)  # (n, side, side, 3)


def _row(vid, path, label, attack, split="train"):
    return dict(video_id=vid, path=str(path), subject_id=f"s_{vid}", device="iphone_12", os="ios", scene="indoor",
                attack_type=attack, label=label, split=split, source="test", meta="")


@pytest.fixture(scope="module")
def videos(tmp_path_factory, real_face_rgb, carphone_video_path):
    """Small real-face videos, a corrupt file and a faceless one, plus a manifest of them (absolute paths)."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mimage

    from components.data.video import write_video

    root = tmp_path_factory.mktemp("label_videos")
    hopper = np.ascontiguousarray(
        mimage.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[..., :3]).astype(np.uint8)
    write_video(root / "live.mp4", _face_frames(real_face_rgb, 22, 200, 220, 130))
    write_video(root / "print.mp4", _face_frames(hopper, 22, 260, 270, 240))
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    write_video(root / "noise.mp4", np.random.default_rng(1).integers(0, 256, (22, 96, 96, 3), dtype=np.uint8))
    shutil.copy(carphone_video_path, root / "carphone.mp4")
    manifest = pd.DataFrame([
        _row("live", root / "live.mp4", 1, "live"),
        _row("print", root / "print.mp4", 0, "print", split="dev"),
        _row("corrupt", root / "corrupt.mp4", 1, "live"),
        _row("noise", root / "noise.mp4", 0, "replay"),
    ])
    return root, manifest


def test_label_pipeline_report_shards_and_cache(ray_session, videos, tmp_path):
    root, manifest = videos
    out = tmp_path / "shards"
    rep = label_videos(manifest, out, CFG, progress=False)

    r = rep.report.set_index("video_id")
    assert rep.n_new == 4 and rep.n_cached == 0
    assert r.loc["live", "status"] == "ok" and r.loc["live", "clips"] == 2
    assert r.loc["print", "status"] == "ok" and r.loc["print", "clips"] == 2
    assert (r.loc["corrupt", "status"], r.loc["corrupt", "reason"]) == ("skipped", "not_a_video")
    assert (r.loc["noise", "status"], r.loc["noise", "reason"]) == ("skipped", "no_face")
    assert r.loc["noise", "detail"] == "no face found in the 8 sampled frames"  # 2 clips x 4 frames looked at
    assert r.loc["live", "frames_no_face"] == 0 and r.loc["live", "max_faces"] == 1
    on_disk = pd.read_csv(out / "report.csv").set_index("video_id")
    assert on_disk.loc["corrupt", "reason"] == "not_a_video" and on_disk.loc["live", "clips"] == 2
    assert "skipped (no_face): 1" in rep.summary() and "skipped (not_a_video): 1" in rep.summary()

    clips = load_clips(out)
    assert list(clips) == SCHEMA_COLUMNS
    assert list(clips["video_id"]) == ["live", "live", "print", "print"]
    assert clips["frames"].shape == (4, 4, 64, 64, 3) and clips["frames"].dtype == np.uint8
    for k in ("location_map", "binary_mask", "depth_map"):
        assert clips[k].shape == (4, 4, 8, 8) and clips[k].dtype == np.float32
    assert list(clips["label"]) == [1, 1, 0, 0] and list(clips["split"]) == ["train", "train", "dev", "dev"]
    assert list(clips["start_frame"]) == [0, 10, 0, 10]
    live, attack = clips["label"] == 1, clips["label"] == 0
    assert (clips["location_map"][attack] == 0).all() and (clips["depth_map"][attack] == 0).all()
    assert (clips["binary_mask"][live] == 1).all() and (clips["binary_mask"][attack] == 0).all()
    assert 0.2 < clips["location_map"][live].mean() < 0.8 and clips["location_map"][live].max() == 1
    assert clips["frames"][live].mean() > 30  # real face pixels, not the zero tensors of a skipped video
    assert len(load_clips(out, split="dev")["video_id"]) == 2

    # The same shards through Ray Data, as Ray Train streams them.
    ds = read_shards(out, split="train")
    batches = list(ds.select_columns(["frames", "location_map", "label"]).iter_torch_batches(batch_size=8))
    assert len(batches) == 1
    b = batches[0]
    assert tuple(b["frames"].shape) == (2, 4, 64, 64, 3) and str(b["frames"].dtype) == "torch.uint8"
    assert tuple(b["location_map"].shape) == (2, 4, 8, 8) and b["label"].tolist() == [1, 1]
    np.testing.assert_array_equal(b["frames"].numpy(), load_clips(out, split="train")["frames"])

    # Second run, one video added: only that one is labeled; the rest comes from the cache.
    extra = _row("carphone", root / "carphone.mp4", 1, "live", split="test")
    more = pd.concat([manifest, pd.DataFrame([extra])], ignore_index=True)
    rep2 = label_videos(more, out, CFG, progress=False)
    assert rep2.n_new == 1 and rep2.n_cached == 4
    r2 = rep2.report.set_index("video_id")
    assert not r2.loc["carphone", "cached"] and r2.loc["carphone", "status"] == "ok" and r2.loc["carphone", "clips"] == 2
    assert r2.loc["corrupt", "cached"] and r2.loc["corrupt", "reason"] == "not_a_video"
    assert len(list((out / "data").iterdir())) == 2  # one folder of shards per run that labeled something
    assert sorted(set(load_clips(out)["video_id"])) == ["carphone", "live", "print"]

    # A video dropped from the manifest disappears from the reads; re-splitting needs no relabeling.
    fewer = more[more["video_id"] != "print"].copy()
    fewer.loc[fewer["video_id"] == "live", "split"] = "dev"
    rep3 = label_videos(fewer, out, CFG, progress=False)
    assert rep3.n_new == 0
    c3 = load_clips(out)
    assert sorted(set(c3["video_id"])) == ["carphone", "live"]
    assert set(c3["split"][c3["video_id"] == "live"]) == {"dev"}
    assert read_shards(out).count() == 4



def test_export_is_the_same_bytes_whatever_the_cache_holds(ray_session, videos, tmp_path, monkeypatch):
    """With a separate cache (the label stage's setup) the output folder is a function of the manifest, config
    and code alone: a fresh cache (everything relabeled) and a warm one give byte-identical files, with no
    timing column and video paths relative to the working directory; re-splitting rewrites the metadata only."""
    import pyarrow.parquet as pq

    root, manifest = videos
    monkeypatch.chdir(root.parent)  # the videos sit inside the working directory, as a repository's data does
    small = manifest[manifest["video_id"].isin(["live", "print", "corrupt"])].copy()
    cfg = LabelConfig(crop_size=64, clips_per_video=1, concurrency=2, max_side=256)
    a = label_videos(small, tmp_path / "a", cfg, progress=False, cache_dir=tmp_path / "cache-a")
    b = label_videos(small, tmp_path / "b", cfg, progress=False, cache_dir=tmp_path / "cache-b")
    assert a.n_new == b.n_new == 3
    names = sorted(p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert names == ["clips/dev-00000.parquet", "clips/train-00000.parquet", "index.csv", "label_config.json",
                     "report.csv"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert not (tmp_path / "a" / "ledger.csv").exists() and (tmp_path / "cache-a" / "ledger.csv").is_file()
    index = pd.read_csv(tmp_path / "a" / "index.csv", keep_default_na=False).set_index("video_id")
    assert index.loc["live", "path"] == f"{root.name}/live.mp4"  # relative, not this machine's full path
    assert index.loc["live", "files"] == "clips/train-00000.parquet" and index.loc["corrupt", "files"] == ""
    assert "cached" not in pd.read_csv(tmp_path / "a" / "report.csv").columns  # history, not an input
    assert "cpu_s" not in pq.read_schema(tmp_path / "a" / "clips" / "train-00000.parquet").names
    np.testing.assert_array_equal(load_clips(tmp_path / "a")["frames"], load_clips(tmp_path / "b")["frames"])

    # Warm cache, one video moved to dev: nothing relabeled, the export follows the manifest.
    moved = small.assign(split=["dev" if v == "live" else s for v, s in zip(small["video_id"], small["split"])])
    c = label_videos(moved, tmp_path / "a", cfg, progress=False, cache_dir=tmp_path / "cache-a")
    assert c.n_new == 0 and c.n_cached == 3
    assert sorted(p.name for p in (tmp_path / "a" / "clips").iterdir()) == ["dev-00000.parquet"]
    clips = load_clips(tmp_path / "a")
    assert list(clips["video_id"]) == ["live", "print"] and set(clips["split"]) == {"dev"}
    assert read_shards(tmp_path / "a", split="dev").count() == 2
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".")) == []  # no staging left

    # An export that fails half-way leaves the previous one whole: it is written beside it and swapped in.
    before = {p.name: p.read_bytes() for p in (tmp_path / "a" / "clips").iterdir()}

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        label_videos(small, tmp_path / "a", cfg, progress=False, cache_dir=tmp_path / "cache-a")
    assert {p.name: p.read_bytes() for p in (tmp_path / "a" / "clips").iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.name.startswith(".")) == []


def test_read_errors_and_config_validation(tmp_path):
    with pytest.raises(ShardsError, match="run the label stage"):
        load_clips(tmp_path)
    with pytest.raises(ValueError, match="multiple of 8"):
        LabelConfig(crop_size=100)
    with pytest.raises(ValueError, match="backend must be one of"):
        LabelConfig(backend="mediapipe")
    with pytest.raises(ValueError, match="depth_source 'backend' needs"):
        LabelConfig(depth_source="backend")
    a, b = LabelConfig(concurrency=1), LabelConfig(concurrency=2)
    assert a.fingerprint() == b.fingerprint() != LabelConfig(crop_size=128).fingerprint()


def test_label_flow_succeeds_with_skipped_videos(ray_session, videos, tmp_path, monkeypatch, capsys):
    import yaml


    root, manifest = videos
    monkeypatch.chdir(tmp_path)
    # Paths relative to the manifest's folder, as ingest writes them.
    art = tmp_path / "artifacts"
    art.mkdir()
    rel = manifest.copy()
    for name in ("live.mp4", "corrupt.mp4"):
        shutil.copy(root / name, art / name)
    rel = rel[rel["video_id"].isin(["live", "corrupt"])]
    rel["path"] = [p.split("/")[-1] for p in rel["path"]]
    rel.to_csv(art / "manifest.csv", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"label": {"crop_size": 64, "clips_per_video": 1,
                                                                    "concurrency": 1}}))
    from flows.cli import main  # prints a refusal and returns its exit code, as `eulernet label` does

    # No validate verdict for this manifest: labeling refuses, and says what to run.
    assert main(["label", "--no-progress"]) == 2
    assert "run `eulernet validate` first" in capsys.readouterr().err
    from components.quality.gates import manifest_digest

    (art / "quality").mkdir()
    (art / "quality" / "summary.json").write_text(json.dumps(
        {"success": True, "failures": [], "manifest_sha256": manifest_digest(art / "manifest.csv")}))
    assert main(["label", "--no-progress"]) == 0
    outp = capsys.readouterr().out
    assert json.loads((art / "shards" / "gates.json").read_text())["gates"] == "passed"
    assert "1 ok, 1 skipped" in outp and "not_a_video" in outp
    assert (art / "shards" / "report.csv").is_file()

    # Only unusable videos: exit 1. Unknown params key: exit 2.
    rel[rel["video_id"] == "corrupt"].to_csv(art / "manifest.csv", index=False)
    assert main(["label", "--no-progress", "--out", "artifacts/shards2"]) == 2  # verdict is stale
    assert "another manifest" in capsys.readouterr().err
    assert main(["label", "--no-progress", "--out", "artifacts/shards2", "--skip-gates"]) == 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"label": {"crop_sz": 64}}))
    assert main(["label"]) == 2
    assert "unknown key" in capsys.readouterr().err
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"label": {"backend_options": {"upsampel": 2}}}))
    assert main(["label"]) == 2
    assert "cannot load landmark backend 'dlib'" in capsys.readouterr().err


def test_label_pipeline_with_storage_uri(ray_session, videos, tmp_path):
    """Shards and staged videos under a storage URI, read back through pyarrow filesystems (S3 works the same)."""
    root, manifest = videos
    out, store = tmp_path / "shards", tmp_path / "store"
    small = manifest[manifest["video_id"].isin(["live", "corrupt"])].copy()
    cfg = LabelConfig(crop_size=64, clips_per_video=1, concurrency=1, max_side=256)
    rep = label_videos(small, out, cfg, progress=False, storage=f"file://{store}")
    r = rep.report.set_index("video_id")
    assert (r.loc["live", "status"], r.loc["live", "clips"]) == ("ok", 1)
    assert r.loc["corrupt", "reason"] == "not_a_video"  # decoded by the worker from its staged copy
    assert not (out / "data").exists()  # only index, ledger and report stay in out_dir
    files = pd.read_csv(out / "index.csv", keep_default_na=False).set_index("video_id").loc["live", "files"]
    assert files.startswith(f"file://{store}/shards/data/") and files.endswith(".parquet")
    staged = sorted(p.name for p in (store / "videos").rglob("*.mp4"))
    assert staged == ["corrupt.mp4", "live.mp4"]

    clips = load_clips(out)
    assert list(clips["video_id"]) == ["live"] and clips["frames"].shape == (1, 4, 64, 64, 3)
    assert read_shards(out).count() == 1

    # Cached: nothing relabeled. Shards gone from storage: relabeled, not a stale cache hit.
    assert label_videos(small, out, cfg, progress=False, storage=f"file://{store}").n_new == 0
    shutil.rmtree(store / "shards")
    rep3 = label_videos(small, out, cfg, progress=False, storage=f"file://{store}")
    assert rep3.report.set_index("video_id").loc["live", "cached"] == False  # noqa: E712 (numpy bool)
    assert len(load_clips(out)["video_id"]) == 1


def _distinct_face_videos(root, real_face_rgb, n):
    from components.data.video import write_video

    rows = []
    for i in range(n):  # different crops of the same real face: distinct bytes, so distinct cache keys
        path = root / f"face{i}.mp4"
        write_video(path, _face_frames(real_face_rgb, 14, 200, 214 + 2 * i, 128 + i))
        rows.append(_row(f"face{i}", path.name, 1 if i % 2 else 0, "live" if i % 2 else "print"))
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_label_resumes_after_a_sigkill_with_the_same_outputs(tmp_path, real_face_rgb):
    """A real SIGKILL of `eulernet label` mid-run: the rerun keeps what was written (no relabeling of finished
    videos), deletes nothing it needs, and ends with the same clips as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from tests.harness.faults import kill_ray_session

    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    art = tmp_path / "artifacts"
    art.mkdir()
    _distinct_face_videos(art, real_face_rgb, 8).to_csv(art / "manifest.csv", index=False)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"label": {
        "crop_size": 64, "clips_per_video": 1, "concurrency": 1, "max_side": 256}}))
    cmd = [f"{bin_dir}/eulernet", "label", "--skip-gates", "--no-progress"]

    proc = subprocess.Popen(cmd + ["--out", "artifacts/shards"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    cache = art / ".cache" / "labels"  # the flow's default --cache: Ray's files land there first
    data = cache / "data"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(data.rglob("*.parquet")):
        time.sleep(0.2)
    killed_mid_run = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    kill_ray_session(out)
    assert not (cache / "ledger.csv").exists() or not killed_mid_run  # the ledger never saw that run

    again = subprocess.run(cmd + ["--out", "artifacts/shards"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    fresh = subprocess.run(cmd + ["--out", "artifacts/fresh", "--cache", "artifacts/fresh-cache"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr[-3000:]

    resumed = pd.read_csv(art / "shards" / "report.csv").set_index("video_id").sort_index()
    clean = pd.read_csv(art / "fresh" / "report.csv").set_index("video_id").sort_index()
    assert (resumed[["status", "clips"]] == clean[["status", "clips"]]).all().all()
    if killed_mid_run:
        import re

        reused = re.search(r"\((\d+) labeled now, (\d+) from cache\)", again.stdout)
        assert reused and int(reused.group(2)) > 0, f"nothing written before the kill was reused: {again.stdout}"
    # The output does not depend on the interruption: the same bytes as the uninterrupted run's.
    for name in ("index.csv", "report.csv", "label_config.json", "clips/train-00000.parquet"):
        assert (art / "shards" / name).read_bytes() == (art / "fresh" / name).read_bytes(), name
    a, b = load_clips(art / "shards"), load_clips(art / "fresh")
    order_a = np.lexsort((a["clip_index"], a["video_id"]))
    order_b = np.lexsort((b["clip_index"], b["video_id"]))
    assert list(a["video_id"][order_a]) == list(b["video_id"][order_b])
    np.testing.assert_array_equal(a["frames"][order_a], b["frames"][order_b])
    np.testing.assert_array_equal(a["location_map"][order_a], b["location_map"][order_b])
