"""`eulernet monitor`: a window of logged requests against the training videos' profile, through real Great
Expectations: requests like the training videos pass (exit 0), uploads at another resolution fail (exit 1),
naming the columns, and a missing log is a clear error (exit 2)."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import yaml


@pytest.fixture(scope="module")
def project(tmp_path_factory, real_face_rgb):
    """Six training videos of a real face (320x320, 15 fps) in a manifest, and the frames they hold."""
    from components.data.video import write_video

    root = tmp_path_factory.mktemp("monitor")
    face = real_face_rgb[:320, 96:416]  # (320, 320, 3)
    rows = ["video_id,path,split"]
    clips = []
    for i in range(6):
        frames = np.stack([np.roll(face, 2 * t + i, axis=1) for t in range(20)])  # (20, 320, 320, 3)
        path = root / f"v{i}.mp4"
        write_video(path, frames, fps=15)
        rows.append(f"v{i},{path},{'train' if i < 5 else 'test'}")
        clips.append(frames)
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    (root / "params.yaml").write_text(yaml.safe_dump({
        "monitor": {"since": "3650d", "min_requests": 10}, "label": {"max_side": 480},
        "serve": {"request_log_dir": str(root / "requests")}}))
    return {"root": root, "clips": clips}


def _log(root, name, clips, source, fps, n=12):
    """n request records as a replica writes them, for uploads of the given size and rate."""
    from components.data.requests import RequestLog, request_record
    from components.face.landmarks import make_backend

    backend = make_backend("dlib")
    log = RequestLog(root / name, "r0")
    for i in range(n):
        px = clips[i % len(clips)][:4]
        faces = backend.detect(px[0])
        log.write(request_record(request_id=f"{name}-{i}", source=source, fps=fps, frames=20, pixels=px,
                                 result={"score": 0.8, "decision": "live", "box": faces[0].box if faces else None}))
    log.close()
    return root / name


def _run(project, log, out):
    from flows import monitor

    root = project["root"]
    args = argparse.Namespace(params=str(root / "params.yaml"), manifest=str(root / "manifest.csv"),
                              log=str(log) if log else None, since=None, until=None, split="train",
                              out=str(root / out))
    return monitor.run(args)


def test_requests_like_the_training_videos_pass(project, capsys):
    log = _log(project["root"], "like", project["clips"], (320, 320), 15.0)
    assert _run(project, log, "ok") == 0
    report = json.loads((project["root"] / "ok" / "drift.json").read_text())
    assert report["success"] and report["n_requests"] == 12 and report["n_training_videos"] == 5
    assert report["bounds"]["source_height"] == pytest.approx([240.0, 400.0])  # 320 -25 % .. +25 %
    assert set(report["outside"].values()) == {0.0}
    assert (project["root"] / "ok" / "drift.png").read_bytes()[:4] == b"\x89PNG"
    assert (project["root"] / "ok" / "data_docs" / "index.html").is_file()
    assert "LIKE TRAINING" in capsys.readouterr().out


def test_uploads_at_another_resolution_are_drift(project, capsys):
    from flows.errors import StageError

    log = _log(project["root"], "hd", project["clips"], (1920, 1080), 15.0)
    with pytest.raises(StageError) as err:
        _run(project, log, "hd-report")
    assert err.value.code == 1
    assert "source_width" in str(err.value) and "source_height" in str(err.value)
    report = json.loads((project["root"] / "hd-report" / "drift.json").read_text())
    assert not report["success"] and report["outside"]["source_height"] == 1.0
    assert report["outside"]["brightness"] == 0.0  # the same faces: only the size moved
    assert "DRIFT" in capsys.readouterr().out


def test_too_few_requests_cannot_pass_and_a_missing_log_is_an_error(project):
    from flows.errors import StageError

    few = _log(project["root"], "few", project["clips"], (320, 320), 15.0, n=3)
    with pytest.raises(StageError, match="enough requests") as err:
        _run(project, few, "few-report")
    assert err.value.code == 1
    with pytest.raises(StageError, match="no request log") as err:
        _run(project, project["root"] / "nowhere", "none")
    assert err.value.code == 2
