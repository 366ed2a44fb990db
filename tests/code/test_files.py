import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from components.files import atomic_path, write_csv, write_json, write_text


def test_writes_land_whole_and_leave_no_temporaries(tmp_path):
    write_text(tmp_path / "a.txt", "hello")
    write_json(tmp_path / "m.json", {"acer": float("nan"), "n": 3})
    write_csv(pd.DataFrame({"x": [1, 2]}), tmp_path / "t.csv")
    assert (tmp_path / "a.txt").read_text() == "hello"
    assert json.loads((tmp_path / "m.json").read_text()) == {"acer": None, "n": 3}
    assert pd.read_csv(tmp_path / "t.csv")["x"].tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "m.json", "t.csv"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    write_text(tmp_path / "ledger.csv", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "ledger.csv") as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert (tmp_path / "ledger.csv").read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_a_killed_writer_never_leaves_half_a_file(tmp_path):
    """A real SIGKILL while the new content is being written: the target still holds the old content."""
    target = tmp_path / "index.csv"
    write_text(target, "old\n")
    code = ("import sys, time\nfrom components.files import atomic_path\n"
            f"with atomic_path({str(target)!r}) as tmp:\n"
            "    fh = open(tmp, 'w'); fh.write('partial'); fh.flush(); print('writing', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait(timeout=30)
    assert target.read_text() == "old\n"


def test_atomic_writes_sync_the_directory_and_use_unique_temp_names(tmp_path, monkeypatch):
    """The rename is durable only once the directory is synced; and two writers of one path (a digest table,
    a checkpoint) never share a fixed `.tmp` name, where one could rename the other's half-written file."""
    import os
    import stat

    from components.files import atomic_path, write_text

    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    write_text(tmp_path / "a.txt", "x")
    assert synced == [False, True]  # the file, then its directory
    with atomic_path(tmp_path / "b.bin") as t1, atomic_path(tmp_path / "b.bin") as t2:
        assert t1 != t2 and t1.parent == t2.parent == tmp_path
        t1.write_bytes(b"1")
        t2.write_bytes(b"2")
    assert (tmp_path / "b.bin").read_bytes() in (b"1", b"2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]  # no temp file left behind
