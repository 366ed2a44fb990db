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
