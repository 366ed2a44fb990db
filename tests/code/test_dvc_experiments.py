"""Pieces of the DVC experiment workflow that need no DVC run: where a queued experiment's MLflow runs go, and the
Table I printer on `dvc exp show --json`'s layout (tests/e2e/test_dvc_repro.py feeds it real output)."""
from __future__ import annotations

import math

from components.runtime import artifact_location, project_root, tracking_uri
from components.training.ablation import ablation_table, experiments_table, runs_from_dvc_exps


def test_a_dvc_experiment_workspace_uses_the_queuing_repository(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    repo = tmp_path / "repo"
    temp = repo / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    temp.mkdir(parents=True)
    assert project_root(temp) == repo.resolve() and project_root(repo) == repo.resolve()
    assert tracking_uri(temp) == f"sqlite:///{repo.resolve()}/mlflow.db" == tracking_uri(repo)
    assert artifact_location("eulernet", repo) is None  # MLflow's own default in a normal workspace
    assert artifact_location("eulernet", temp) == str(repo.resolve() / "mlruns" / "eulernet")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking_uri(temp) == "http://mlflow:5000" and artifact_location("eulernet", temp) is None


def _rev(name: str, variant: str, seed: int, acer: float | None, dev: float = 0.25) -> dict:
    metrics = {"metrics/eval.json": {"data": {"test_acer": acer, "test_apcer": acer, "test_bpcer": 0.0,
                                              "test_auc": 0.9, "dev_acer": dev, "threshold": 0.5}}}
    if acer is None:
        metrics = {"metrics/eval.json": {"error": {"type": "FileNotFoundError", "msg": "no metrics"}}}
    return {"rev": f"{abs(hash(name)):040x}"[:40], "name": name,
            "data": {"params": {"params.yaml": {"data": {"train": {"variant": variant, "seed": seed,
                                                                   "label_type": None}}}},
                     "metrics": metrics}}


def test_table_i_from_dvc_exp_show_layout():
    base = _rev("main", "eulernet", 0, 0.01)  # the baseline commit: not an experiment row
    shown = [{"rev": "workspace", "name": None, "data": base["data"], "experiments": None},
             {**base, "experiments": [
                 {"name": "t1-c3-s0", "revs": [_rev("t1-c3-s0", "c3", 0, 0.10)]},
                 {"name": "t1-c3-s1", "revs": [_rev("t1-c3-s1", "c3", 1, 0.20)]},
                 {"name": "t1-baseline-s0", "revs": [_rev("t1-baseline-s0", "baseline", 0, 0.05)]},
                 {"name": "t1-c1-s0", "revs": [_rev("t1-c1-s0", "c1", 0, None)]},
                 {"name": "lr-high", "revs": [_rev("lr-high", "eulernet", 0, 0.3)]}]}]
    runs = runs_from_dvc_exps(shown, "t1-*")
    assert sorted(runs["experiment"]) == ["t1-baseline-s0", "t1-c1-s0", "t1-c3-s0", "t1-c3-s1"]
    c3 = runs[runs["variant"] == "c3"]
    assert list(c3["label_type"]) == ["location_map"] * 2 and math.isnan(runs.set_index("experiment").loc[
        "t1-c1-s0", "test_acer"])
    table = ablation_table(runs)
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "15.00 ± 7.07" in rows["Compare 3"] and "5.00 ± 0.00" in rows["Baseline"]
    assert rows["Compare 1"].rstrip().endswith("n/a |") and "Binary Mask" in rows["Compare 1"]
    listing = experiments_table(runs)
    assert listing.index("t1-c1-s0") < listing.index("t1-c3-s0") < listing.index("t1-baseline-s0")  # Table I order
    assert len(runs_from_dvc_exps(shown)) == 5 and runs_from_dvc_exps(shown, "nothing").empty
