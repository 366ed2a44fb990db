import numpy as np
import pandas as pd
import pytest

from components.data.manifest import COLUMNS, ManifestError, check_manifest, read_manifest, write_manifest
from components.data.video import VideoError, read_frames, write_video


def _row(i, attack="live", split="train"):
    return dict(video_id=f"v{i}", path=f"videos/v{i}.mp4", subject_id=f"s{i}", device="pixel", os="android",
                scene="indoor", attack_type=attack, label=int(attack == "live"), split=split)


def test_round_trip_adds_optional_columns(tmp_path):
    df = pd.DataFrame([_row(0), _row(1, "print", "dev")])
    write_manifest(df, tmp_path / "m.csv")
    back = read_manifest(tmp_path / "m.csv")
    assert list(back.columns) == COLUMNS and back["label"].tolist() == [1, 0]


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.drop(columns=["scene"]), "missing columns ['scene']"),
    (lambda d: d.assign(label=[1, 2]), "label must be 0"),
    (lambda d: d.assign(attack_type=["live", "deepfake"]), "deepfake"),
    (lambda d: d.assign(split=["train", "val"]), "split must be one of"),
    (lambda d: d.assign(label=[0, 0]), "label=1 iff"),
    (lambda d: d.assign(video_id=["a", "a"]), "duplicated"),
])
def test_schema_errors_name_the_problem(mutate, needle):
    df = mutate(pd.DataFrame([_row(0), _row(1, "print")]))
    with pytest.raises(ManifestError, match=None) as err:
        check_manifest(df)
    assert needle in str(err.value)


def test_video_round_trip_and_clear_errors(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (12, 48, 64, 3), dtype=np.uint8)
    write_video(tmp_path / "a.avi", frames, fps=10)
    back = read_frames(tmp_path / "a.avi")
    assert back.shape == (12, 48, 64, 3)
    assert read_frames(tmp_path / "a.avi", max_frames=5, max_side=32).shape == (5, 24, 32, 3)
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoError) as err:
        read_frames(tmp_path / "bad.mp4")
    assert err.value.reason == "not_a_video"  # bytes without a container signature: never handed to FFmpeg
    with pytest.raises(VideoError, match="missing"):
        read_frames(tmp_path / "nope.mp4")


def test_digest_table_hashes_each_file_version_once(tmp_path):
    import hashlib
    import os

    from components.data.digest import DigestTable

    f = tmp_path / "v.mp4"
    f.write_bytes(b"first version")
    first = DigestTable()
    assert first.digest(f) == hashlib.sha256(b"first version").hexdigest() and first.hashed == 1
    first.write(tmp_path / "cache.csv")
    again = DigestTable.read(tmp_path / "cache.csv")
    assert again.digest(f) == hashlib.sha256(b"first version").hexdigest() and again.hashed == 0  # reused
    f.write_bytes(b"second version!")  # new size: the stale entry must not be trusted
    os.utime(f, ns=(1, 1))
    assert again.digest(f) == hashlib.sha256(b"second version!").hexdigest() and again.hashed == 1
    assert DigestTable.read(tmp_path / "missing.csv").rows == {}
