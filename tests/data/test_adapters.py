"""Adapters: the embedded sample, a generic CSV, and an OULU-NPU tree with real naming and protocol files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from components.data.adapters import from_generic_csv, from_oulu_npu, from_sample, parse_oulu_name
from components.data.manifest import ManifestError, read_manifest
from components.data.video import read_frames, write_video

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("v") / "tiny.avi"
    frames = np.random.default_rng(0).integers(0, 255, size=(3, 16, 16, 3), dtype=np.uint8)
    write_video(p, frames, 10)
    return p


def test_from_sample_reads_the_embedded_sample(monkeypatch):
    monkeypatch.chdir(REPO)
    df = from_sample("data/sample")
    assert len(df) == 60 and df["path"].str.startswith("data/sample/videos/").all()
    assert all(Path(p).is_file() for p in df["path"])
    assert df.groupby("split")["subject_id"].nunique().to_dict() == {"train": 3, "dev": 1, "test": 1}


def test_from_sample_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest.csv not found"):
        from_sample(tmp_path)


# ------------------------------------------------------------------------------------------------ generic
def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def test_generic_csv_columns_aliases_and_default_splits(tmp_path, tiny_video):
    for name in ("a.avi", "b.avi", "c.avi"):
        shutil.copy(tiny_video, tmp_path / name)
    _write_csv(tmp_path / "labels.csv", """
path,subject_id,device,scene,attack_type,os,label,lamp
a.avi,u1,pixel_7,indoor,real,android,1,desk
b.avi,u1,pixel_7,indoor,photo,android,0,
sub/c.avi,u2,iphone_13,outdoor,replay,ios,,
""")
    df = from_generic_csv(tmp_path)
    assert list(df["attack_type"]) == ["live", "print", "replay"]
    assert list(df["label"]) == [1, 0, 0]
    assert list(df["video_id"]) == ["a", "b", "c"]
    assert df["path"].iloc[2] == (tmp_path / "sub/c.avi").as_posix()
    assert json.loads(df["meta"].iloc[0]) == {"lamp": "desk", "meta": ""}
    assert list(df["split"]) == ["train", "train", "train"]  # u1, u2 -> first two slots of 3:1:1
    assert set(df["source"]) == {"generic:labels.csv"}


def test_generic_csv_rejects_unknown_labels_naming_the_line(tmp_path):
    csv = _write_csv(tmp_path / "x.csv", """
path,subject_id,device,scene,attack_type,split,label
a.avi,u1,d,indoor,live,train,1
b.avi,u1,d,indoor,hologram,train,0
c.avi,u2,d,indoor,print,test,1
d.avi,u3,d,indoor,print,validation,0
""")
    with pytest.raises(ManifestError) as err:
        from_generic_csv(tmp_path, csv)
    msg = str(err.value)
    assert "3 bad row(s)" in msg
    assert "line 3: unknown attack_type 'hologram'" in msg
    assert "line 4: label 1 contradicts attack_type 'print'" in msg
    assert "line 5: unknown split 'validation'" in msg


def test_generic_csv_missing_columns(tmp_path):
    csv = _write_csv(tmp_path / "x.csv", "path,subject_id\na.avi,u1\n")
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['device', 'scene', 'attack_type'\]"):
        from_generic_csv(tmp_path, csv)


# ----------------------------------------------------------------------------------------------- OULU-NPU
PHONES = (1, 2, 3)
USERS = {"Train": (1, 2), "Dev": (21,), "Test": (36, 37)}


def _names(phones, sessions, users, files):
    return [f"{p}_{s}_{u:02d}_{f}" for p in phones for s in sessions for u in users for f in files]


def _line(name: str, test_list: bool) -> str:
    access = int(name[-1])
    if access == 1:
        return f"+1,{name}"
    return f"{'-2' if test_list and access >= 4 else '-1'},{name}"


@pytest.fixture(scope="module")
def oulu_tree(tmp_path_factory, tiny_video):
    """Real OULU-NPU layout: {Train,Dev,Test}_files/P_S_UU_F.avi and Protocols/Protocol_N lists."""
    root = tmp_path_factory.mktemp("oulu")
    for split, users in USERS.items():
        d = root / f"{split}_files"
        d.mkdir()
        for name in _names(PHONES, (1, 2, 3), users, (1, 2, 3, 4, 5)):
            shutil.copy(tiny_video, d / f"{name}.avi")
    expected = {}

    def write(protocol, fname, names, test_list):
        p = root / "Protocols" / f"Protocol_{protocol}"
        p.mkdir(parents=True, exist_ok=True)
        (p / fname).write_text("\n".join(_line(n, test_list) for n in names) + "\n")
        expected[(protocol, fname)] = names

    # Protocol 1 (illumination): sessions 1,2 for train/dev, session 3 for test; print 1 + replay 1 vs 2.
    write(1, "Train.txt", _names(PHONES, (1, 2), USERS["Train"], (1, 2, 4)), False)
    write(1, "Dev.txt", _names(PHONES, (1, 2), USERS["Dev"], (1, 2, 4)), False)
    write(1, "Test.txt", _names(PHONES, (3,), USERS["Test"], (1, 3, 5)), True)
    # Protocol 3 (leave one phone out), folds 1..3 over the three phones of this tree.
    for k in PHONES:
        rest = tuple(p for p in PHONES if p != k)
        write(3, f"Train_{k}.txt", _names(rest, (1, 2, 3), USERS["Train"], (1, 2, 3, 4, 5)), False)
        write(3, f"Dev_{k}.txt", _names(rest, (1, 2, 3), USERS["Dev"], (1, 2, 3, 4, 5)), False)
        write(3, f"Test_{k}.txt", _names((k,), (1, 2, 3), USERS["Test"], (1, 2, 3, 4, 5)), True)
    return root, expected


def test_oulu_protocol_1_reproduces_split_sizes_and_labels(oulu_tree):
    root, expected = oulu_tree
    df = from_oulu_npu(root, protocol=1)
    for split, fname in (("train", "Train.txt"), ("dev", "Dev.txt"), ("test", "Test.txt")):
        names = expected[(1, fname)]
        part = df[df["split"] == split]
        assert list(part["video_id"]) == names
        assert list(part["label"]) == [int(n.endswith("_1")) for n in names]
    assert df.groupby("split").size().to_dict() == {"train": 36, "dev": 18, "test": 18}
    test = df[df["split"] == "test"]
    assert test["attack_type"].value_counts().to_dict() == {"live": 6, "print": 6, "replay": 6}
    assert set(test["scene"]) == {"hall"} and set(df[df["split"] == "train"]["scene"]) == {"office", "meeting_room"}
    assert set(df["device"]) == {"samsung_galaxy_s6_edge", "htc_desire_eye", "meizu_x5"}
    assert set(df["os"]) == {"android"}
    row = df[df["video_id"] == "2_3_36_5"].iloc[0]
    assert (row["subject_id"], row["attack_type"], row["path"]) == ("oulu_36", "replay",
                                                                    (root / "Test_files/2_3_36_5.avi").as_posix())
    assert json.loads(row["meta"])["code"] == "-2"
    assert read_frames(row["path"]).shape == (3, 16, 16, 3)


@pytest.mark.parametrize("fold", [1, 2, 3])
def test_oulu_protocol_3_folds_leave_one_phone_out(oulu_tree, fold):
    root, expected = oulu_tree
    df = from_oulu_npu(root, protocol=3, fold=fold)
    assert df.groupby("split").size().to_dict() == {"train": 60, "dev": 30, "test": 30}
    test_phones = {int(v.split("_")[0]) for v in df[df["split"] == "test"]["video_id"]}
    train_phones = {int(v.split("_")[0]) for v in df[df["split"] == "train"]["video_id"]}
    assert test_phones == {fold} and fold not in train_phones
    assert (df["label"] == (df["attack_type"] == "live")).all()
    assert set(df["source"]) == {f"oulu-npu/P3-{fold}"}


def test_oulu_errors_name_the_problem(oulu_tree, tmp_path):
    root, _ = oulu_tree
    with pytest.raises(ValueError, match="six folds"):
        from_oulu_npu(root, protocol=3)
    with pytest.raises(ValueError, match="no folds"):
        from_oulu_npu(root, protocol=1, fold=2)
    with pytest.raises(ManifestError, match="Protocol_3/Train_4.txt not found"):
        from_oulu_npu(root, protocol=3, fold=4)
    with pytest.raises(ManifestError, match="Protocol_2/Train.txt not found"):
        from_oulu_npu(root, protocol=2)
    bad = tmp_path / "oulu"
    shutil.copytree(root / "Test_files", bad / "Test_files")
    (bad / "Protocols" / "Protocol_2").mkdir(parents=True)
    (bad / "Protocols" / "Protocol_2" / "Train.txt").write_text("+1,1_1_36_2\n-2,1_1_36_2\n+1,1_1_99_1\n")
    (bad / "Protocols" / "Protocol_2" / "Dev.txt").write_text("bogus line\n")
    (bad / "Protocols" / "Protocol_2" / "Test.txt").write_text("")
    with pytest.raises(ManifestError) as err:
        from_oulu_npu(bad, protocol=2)
    msg = str(err.value)
    assert "Train.txt line 1: +1 contradicts access type 2 (print)" in msg
    assert "Train.txt line 2: -2 marks replay but access type 2 is print" in msg
    assert "Dev.txt line 1: expected" in msg
    assert "1 listed video(s) not found" in msg and "1_1_99_1" in msg


def test_oulu_protocol_files_naming(tmp_path):
    from components.data.adapters import oulu_protocol_files

    base = tmp_path / "Protocols"
    assert oulu_protocol_files(tmp_path, 2) == {"train": base / "Protocol_2/Train.txt",
                                                "dev": base / "Protocol_2/Dev.txt",
                                                "test": base / "Protocol_2/Test.txt"}
    assert oulu_protocol_files(tmp_path, 4, 6)["test"] == base / "Protocol_4/Test_6.txt"
    with pytest.raises(ValueError, match="protocol must be 1, 2, 3 or 4"):
        oulu_protocol_files(tmp_path, 5)
    with pytest.raises(ValueError, match="fold must be 1..6"):
        oulu_protocol_files(tmp_path, 4, 7)


def test_parse_oulu_name():
    assert parse_oulu_name("6_2_55_4") == {"phone": 6, "session": 2, "user": 55, "access": 4,
                                           "device": "oppo_n3", "scene": "meeting_room", "attack_type": "replay"}
    with pytest.raises(ValueError, match="not an OULU-NPU name"):
        parse_oulu_name("7_1_01")


# -------------------------------------------------------------------------------------------- ingest flow
def test_ingest_flow_writes_repo_relative_manifest(tmp_path, monkeypatch, capsys, oulu_tree):
    from flows.cli import main

    monkeypatch.chdir(REPO)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"adapter": "sample", "root": "data/sample"}}))
    out = tmp_path / "manifest.csv"
    assert main(["ingest", "--params", str(params), "--out", str(out)]) == 0
    df = read_manifest(out)
    assert len(df) == 60 and df["path"].iloc[0].startswith("data/sample/videos/")
    text = capsys.readouterr().out
    assert "60 videos, 5 subjects" in text and "train" in text

    root, _ = oulu_tree
    params.write_text(yaml.safe_dump({"data": {"adapter": "oulu", "root": str(root), "protocol": 3, "fold": 2}}))
    assert main(["ingest", "--params", str(params), "--out", str(out)]) == 0
    assert len(read_manifest(out)) == 120

    params.write_text(yaml.safe_dump({"data": {"adapter": "oulu", "root": str(root), "protocol": 3}}))
    assert main(["ingest", "--params", str(params), "--out", str(out)]) == 2
    assert "six folds" in capsys.readouterr().err
    params.write_text(yaml.safe_dump({"data": {"adapter": "sample", "root": "data/sample", "colour": 1}}))
    assert main(["ingest", "--params", str(params), "--out", str(out)]) == 2
    assert "unknown key(s) ['colour']" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ contained paths
def _generic_root(tmp_path: Path, tiny_video: Path, paths: list[str]) -> Path:
    root = tmp_path / "dataset"
    (root / "v").mkdir(parents=True)
    shutil.copy(tiny_video, root / "v" / "in.avi")
    rows = "\n".join(f"{p},u{i},d,indoor,live,vid{i}" for i, p in enumerate(paths))
    _write_csv(root / "labels.csv", f"path,subject_id,device,scene,attack_type,video_id\n{rows}")
    return root


def test_generic_csv_paths_must_stay_inside_the_root(tmp_path, tiny_video):
    outside = tmp_path / "secret.avi"
    shutil.copy(tiny_video, outside)
    root = _generic_root(tmp_path, tiny_video, ["v/in.avi", "../secret.avi", str(outside), "v/../../secret.avi",
                                                "v/link.avi", "v/./in.avi"])
    (root / "v" / "link.avi").symlink_to(outside)  # a symlink inside the root that leads out of it
    with pytest.raises(ManifestError) as err:
        from_generic_csv(root)
    msg = str(err.value)
    assert "4 bad row(s)" in msg and "allow_outside_root" in msg
    for line in (3, 4, 5, 6):  # '..', absolute, '..' after a subfolder, the symlink
        assert f"line {line}: path" in msg and "outside the dataset root" in msg
    assert "line 2:" not in msg and "line 7:" not in msg
    assert f"resolves to {outside.resolve()}" in msg

    df = from_generic_csv(root, allow_outside_root=True)  # explicit opt-in: accepted as written
    assert list(df["path"])[:3] == [(root / "v/in.avi").as_posix(), (root / "../secret.avi").as_posix(),
                                    outside.as_posix()]


def test_symlinks_inside_the_root_and_a_symlinked_root_are_fine(tmp_path, tiny_video):
    root = _generic_root(tmp_path, tiny_video, ["v/alias.avi", "v/in.avi"])
    (root / "v" / "alias.avi").symlink_to(root / "v" / "in.avi")
    linked = tmp_path / "linked-root"
    linked.symlink_to(root)  # the dataset folder itself reached through a symlink
    assert len(from_generic_csv(linked, linked / "labels.csv")) == 2


def test_sample_manifest_paths_must_stay_inside_the_root(tmp_path):
    import pandas as pd

    root = tmp_path / "sample"
    root.mkdir()
    manifest = pd.read_csv(REPO / "data/sample/manifest.csv", dtype=str, keep_default_na=False).head(3)
    manifest.loc[1, "path"] = "../../etc/passwd"
    manifest.loc[2, "path"] = "/etc/hostname"
    manifest.to_csv(root / "manifest.csv", index=False)
    with pytest.raises(ManifestError, match=r"2 path\(s\) outside the dataset root") as err:
        from_sample(root)
    assert "line 3: path" in str(err.value) and "line 4: path" in str(err.value)
    assert len(from_sample(root, allow_outside_root=True)) == 3


def test_oulu_video_symlinked_from_outside_is_refused(oulu_tree, tmp_path):
    root, _ = oulu_tree
    copy = tmp_path / "oulu"
    shutil.copytree(root, copy, symlinks=True)
    victim = copy / "Test_files" / "1_3_36_1.avi"
    outside = tmp_path / "elsewhere.avi"
    shutil.move(victim, outside)
    victim.symlink_to(outside)
    with pytest.raises(ManifestError, match=r"Test.txt line 1: path .* outside the dataset root"):
        from_oulu_npu(copy, protocol=1)
    assert len(from_oulu_npu(copy, protocol=1, allow_outside_root=True)) == 72


def test_allow_outside_root_is_a_data_param():
    from components.config import ConfigError, load_section
    from components.data.adapters import IngestConfig

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["data"]["allow_outside_root"] is False  # off by default, and spelled out in params.yaml
    assert load_section(IngestConfig, "data", REPO / "params.yaml").allow_outside_root is False
    assert load_section(IngestConfig, "data", {"data": {"allow_outside_root": True}}).allow_outside_root is True
    with pytest.raises(ConfigError, match="unknown key"):
        load_section(IngestConfig, "data", {"data": {"allow_outside_roots": True}})


def test_generic_csv_name_and_location_follow_the_dataset_root(tmp_path, tiny_video, monkeypatch):
    """`data.csv` is relative to `data.root` (not the working directory); with no `data.csv` the generator's own
    file name, manifest.csv, is found first (labels.csv still works)."""
    root = tmp_path / "mydata"
    (root / "meta").mkdir(parents=True)
    shutil.copy(tiny_video, root / "a.avi")
    body = "path,subject_id,device,scene,attack_type\na.avi,u1,pixel_7,indoor,real\n"
    _write_csv(root / "meta" / "my.csv", body)
    monkeypatch.chdir(tmp_path)  # a relative csv must not be looked up here
    assert len(from_generic_csv(root, "meta/my.csv")) == 1
    with pytest.raises(ManifestError, match="relative to data.root"):
        from_generic_csv(root, "my.csv")
    with pytest.raises(ManifestError, match="manifest.csv"):
        from_generic_csv(root)
    _write_csv(root / "manifest.csv", body)
    assert set(from_generic_csv(root)["source"]) == {"generic:manifest.csv"}
