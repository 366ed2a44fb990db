"""`eulernet register | promote | rollback | predict` against a real MLflow SQLite store in tmp_path."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

NAME = "eulernet-cli"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A repo-shaped folder: checkpoint, eval outputs, params.yaml; MLflow SQLite + artifacts inside it."""
    import mlflow

    from components.inference.checkpoint import build_meta, save_checkpoint
    from components.model.eulernet import create_model

    root = tmp_path_factory.mktemp("repo")
    save_checkpoint(root / "artifacts/model/checkpoint.pt", create_model("c4", width=0.125),
                    build_meta(variant="c4", crop_size=64, clips_per_video=1))
    (root / "artifacts/shards").mkdir(parents=True)  # its test rows are the registered test_data_hash
    (root / "artifacts/shards/index.csv").write_text(
        "video_id,cache_key,split,label,status\nv0,k0,test,1,ok\nv1,k1,test,0,ok\nv2,k2,train,1,ok\n")
    (root / "params.yaml").write_text(
        "register:\n"
        f"  model_name: {NAME}\n"
        "  metric: acer\n"
        "serve:\n"
        "  max_frames: 60\n"
    )
    previous_uri, previous_cwd = mlflow.get_tracking_uri(), os.getcwd()
    previous_env = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.chdir(root)
    yield root
    os.chdir(previous_cwd)
    if previous_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous_env
    mlflow.set_tracking_uri(previous_uri)


def cli(*argv) -> int:
    from flows.cli import main

    return main(list(argv))


def write_eval(root, acer: float, threshold: float, reported: float | None = None) -> None:
    """What train + evaluate leave: the checkpoint carrying its dev-chosen ``threshold`` and an evaluation report
    computed at ``reported`` (the same threshold unless a test says otherwise)."""
    import torch

    path = root / "artifacts/model/checkpoint.pt"
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["threshold"] = threshold
    torch.save(ckpt, path)
    (root / "artifacts/eval").mkdir(parents=True, exist_ok=True)
    test = {"acer": acer, "apcer": acer * 1.5, "bpcer": acer * 0.5, "auc": 1 - acer}
    at = threshold if reported is None else reported
    (root / "artifacts/eval/metrics.json").write_text(json.dumps({"threshold": at, **test, "test": test,
                                                                   "dev": {"acer": 0.0}}))


def registered(root) -> dict:
    return json.loads((root / "artifacts/register/registered.json").read_text())


def test_register_promote_rollback_cycle(workdir, capsys):
    from mlflow import MlflowClient

    from components.registry.load import load_champion
    from components.registry.versions import champion_history

    write_eval(workdir, acer=0.20, threshold=0.42)
    assert cli("register", "--params", "params.yaml") == 0
    out = capsys.readouterr().out
    assert "PROMOTED" in out and "no champion yet" in out
    reg = registered(workdir)
    assert reg["version"] == "1" and reg["champion_version"] == "1"
    assert reg["aliases"] == {"candidate": "1", "champion": "1"} and reg["decision"]["promoted"] is True

    # The dev-chosen threshold travels inside the registered checkpoint; metrics are version tags.
    predictor, info = load_champion(NAME)
    assert predictor.threshold == pytest.approx(0.42)
    assert info["metrics"]["acer"] == pytest.approx(0.20) and info["tags"]["threshold_source"] == "dev"
    reqs = MlflowClient().get_model_version(NAME, "1")
    assert reqs.run_id
    from components.registry.register import hash_test_data  # the test rows of the shards index, as a tag

    assert reqs.tags["test_data_hash"] == hash_test_data(workdir / "artifacts/shards/index.csv")

    write_eval(workdir, acer=0.30, threshold=0.40)  # worse: registered as candidate, champion kept
    assert cli("register", "--params", "params.yaml") == 0
    out = capsys.readouterr().out
    assert "KEPT champion" in out and "0.3000 is worse than champion 0.2000" in out
    reg = registered(workdir)
    assert reg["version"] == "2" and reg["champion_version"] == "1" and reg["aliases"]["candidate"] == "2"

    assert cli("promote", "--params", "params.yaml") == 0  # still worse: refused again
    assert "KEPT" in capsys.readouterr().out
    assert cli("promote", "--params", "params.yaml", "--force") == 0
    assert "PROMOTED (forced)" in capsys.readouterr().out
    tags = MlflowClient().get_model_version(NAME, "2").tags
    assert tags["promoted_by_force"] == "true" and "forced despite" in tags["promotion_reason"]
    assert champion_history(NAME) == ["1", "2"]

    assert cli("rollback", "--params", "params.yaml") == 0
    assert "from v2 to v1" in capsys.readouterr().out
    assert str(MlflowClient().get_model_version_by_alias(NAME, "champion").version) == "1"
    assert cli("rollback", "--params", "params.yaml") == 2  # nothing older than v1
    assert "no previous champion" in capsys.readouterr().err

    write_eval(workdir, acer=0.20, threshold=0.45)  # equal counts as "at least as good"
    assert cli("register", "--params", "params.yaml") == 0
    assert registered(workdir)["champion_version"] == "3"
    assert "at least as good" in capsys.readouterr().out

    assert cli("promote", "--params", "params.yaml", "--version", "2", "--metric", "auc") == 0
    out = capsys.readouterr().out  # auc: higher is better; v2 0.70 < v3 0.80, and v2 was rolled back
    assert "higher is better" in out and "KEPT" in out and "rolled back" in out


def test_register_refuses_a_report_computed_at_another_threshold(workdir, capsys):
    """The threshold is chosen once (training, on dev) and registered as the checkpoint carries it; an evaluation
    report left from another checkpoint (another threshold) would register figures of a different model."""
    from mlflow import MlflowClient

    before = len(MlflowClient().search_model_versions(f"name='{NAME}'"))
    write_eval(workdir, acer=0.01, threshold=0.42, reported=0.37)
    assert cli("register", "--params", "params.yaml") == 2
    err = capsys.readouterr().err
    assert "computed at threshold 0.37" in err and "carries 0.42" in err and "re-run `eulernet evaluate`" in err
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == before  # nothing registered


def test_register_logs_the_model_card_the_replicas_serve(workdir):
    """The card logged at register is the text model_card builds from the version's registry record: the one
    /v1/model/card serves for it."""
    from mlflow import MlflowClient

    from components.inference.checkpoint import load_checkpoint
    from components.inference.config import InferenceConfig
    from components.registry.card import CARD_FILE, model_card
    from components.registry.versions import version_info

    reg = registered(workdir)
    info = version_info(reg["name"], reg["version"])
    client = MlflowClient()
    logged = Path(client.download_artifacts(info["run_id"], CARD_FILE, str(workdir / "card"))).read_text()
    inference = InferenceConfig.from_meta(load_checkpoint(workdir / "artifacts/model/checkpoint.pt"))
    assert logged == model_card(info, inference.with_threshold(float(info["tags"]["threshold"])))
    assert f"# Model card: {reg['name']} v{reg['version']}" in logged and "| ACER |" in logged


def test_promote_unknown_model_is_a_clear_error(workdir, capsys):
    assert cli("promote", "--params", "params.yaml", "--model-name", "nope") == 2
    assert "no 'candidate' alias" in capsys.readouterr().err


def test_register_without_checkpoint_fails_cleanly(workdir, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(f"register:\n  checkpoint: {tmp_path / 'missing.pt'}\n")
    assert cli("register", "--params", str(tmp_path / "p.yaml")) == 2
    assert "not found" in capsys.readouterr().err


def test_predict_cli_with_registered_champion(workdir, real_face_rgb, capsys):
    from components.data.video import write_video

    face = real_face_rgb[20:260, 110:350]  # (240, 240, 3)
    frames = np.stack([np.roll(face, i, axis=1) for i in range(12)])  # (12, 240, 240, 3) slight motion
    write_video(workdir / "face.mp4", frames, fps=15)
    assert cli("predict", "face.mp4", "--params", "params.yaml", "--model", f"models:/{NAME}@champion") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == {"name": NAME, "version": "3"}
    assert out["threshold"] == pytest.approx(0.45) and out["n_clips"] == 1
    assert 0.0 <= out["score"] <= 1.0 and out["decision"] in ("live", "spoof")
    assert cli("predict", "missing.mp4", "--params", "params.yaml",
               "--checkpoint", "artifacts/model/checkpoint.pt") == 2
    assert "does not exist" in capsys.readouterr().err


def test_registered_pyfunc_loads_by_alias_and_matches_the_predictor(workdir, real_face_rgb):
    """`mlflow.pyfunc.load_model("models:/<name>@champion")` in a fresh interpreter (nothing of ours imported
    beforehand) scores a video exactly as the Predictor does, and names why a bad video got no score."""
    import subprocess
    import sys

    from components.data.video import write_video
    from components.registry.load import load_champion

    face = real_face_rgb[20:260, 110:350]  # (240, 240, 3)
    frames = np.stack([np.roll(face, 2 * i, axis=0) for i in range(14)])  # (14, 240, 240, 3)
    write_video(workdir / "pyfunc.mp4", frames, fps=15)
    (workdir / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    code = (
        "import json, mlflow.pyfunc, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model('models:/{NAME}@champion')\n"
        "out = m.predict(pd.DataFrame({'video': ['pyfunc.mp4', 'broken.mp4']}))\n"
        "print(json.dumps(out.astype(object).where(out.notna(), None).to_dict('records')))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    proc = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    predictor, info = load_champion(NAME)
    want = predictor.predict_file(workdir / "pyfunc.mp4")
    assert rows[0]["error"] is None and rows[0]["n_clips"] == want["n_clips"] >= 1
    assert rows[0]["score"] == pytest.approx(want["score"], abs=1e-6)
    assert rows[0]["decision"] == want["decision"] and rows[0]["threshold"] == pytest.approx(predictor.threshold)
    assert rows[1]["score"] is None and rows[1]["decision"] is None and "broken.mp4" in rows[1]["error"]


def test_cli_names_what_is_wrong(workdir, capsys):
    """A typo'd metric, a directory and a text file named .mp4 each get their own clear message (exit 2)."""
    assert cli("promote", "--params", "params.yaml", "--metric", "bogus") == 2
    err = capsys.readouterr().err
    assert "'bogus' metric" in err and "'acer'" in err
    assert cli("predict", ".", "--checkpoint", "artifacts/model/checkpoint.pt") == 2
    assert "is a directory" in capsys.readouterr().err
    (workdir / "notes.mp4").write_text("just some text, renamed\n" * 40)
    assert cli("predict", "notes.mp4", "--checkpoint", "artifacts/model/checkpoint.pt") == 2
    assert "not_a_video" in capsys.readouterr().err


def test_registered_model_carries_the_onnx_flavour(workdir):
    """The registered version's MLmodel declares `onnx` beside `python_function` (same metadata);
    `mlflow.onnx.load_model` + onnxruntime on it reproduce the torch scores; serving loads it with ONNX Runtime."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import mlflow.onnx
    import onnxruntime as ort
    from mlflow.models import Model

    from components.inference.tensors import clip_scores, to_model_input
    from components.registry.champion import promote
    from components.registry.load import load_version
    from components.registry.register import register

    name = f"{NAME}-onnx"
    version = register(workdir / "artifacts/model/checkpoint.pt", name, {"acer": 0.1}, threshold=0.5)
    promote(name, force=True)
    uri = f"models:/{name}@champion"
    mlmodel = Model.load(uri)
    assert {"python_function", "onnx"} <= set(mlmodel.flavors)
    assert mlmodel.flavors["onnx"]["data"] == "artifacts/model.onnx"
    assert mlmodel.metadata["inference"]["crop_size"] == 64

    graph = mlflow.onnx.load_model(uri)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    torch_pred, _ = load_version(name, version, engine="torch")
    crops = np.random.default_rng(1).integers(0, 256, size=(4, 4, 64, 64, 3), dtype=np.uint8)
    x = to_model_input(crops, torch_pred.mean, torch_pred.std).numpy()
    got = clip_scores(session.run(None, {session.get_inputs()[0].name: x})[0])
    np.testing.assert_allclose(got, torch_pred.score_clips(crops), atol=1e-4)

    served, _ = load_version(name, version)  # what the Serve app and `eulernet predict` load
    assert served.engine == "onnx"
    np.testing.assert_allclose(served.score_clips(crops), torch_pred.score_clips(crops), atol=1e-4)


def test_an_artifact_changed_after_registration_is_refused(workdir):
    """Fault injection: the stored checkpoint is replaced after `register` (a bucket write, a bad copy).
    load_version (replicas, predict, the benchmarks) and the pyfunc both refuse it; untouched, both load."""
    import shutil

    import mlflow.pyfunc
    from mlflow import MlflowClient

    from components.inference.checkpoint import load_checkpoint
    from components.registry.load import load_version
    from components.registry.register import register
    from components.registry.versions import DIGEST_PREFIX, RegistryError

    name = f"{NAME}-digest"
    v = register(workdir / "artifacts/model/checkpoint.pt", name, {"acer": 0.2}, threshold=0.5)
    client = MlflowClient()
    tags = client.get_model_version(name, v).tags
    assert len(tags[f"{DIGEST_PREFIX}checkpoint"]) == 64
    predictor, _ = load_version(name, v, engine="torch")
    assert predictor.threshold == 0.5
    mlflow.pyfunc.load_model(f"models:/{name}/{v}")  # untouched: loads
    root = client.get_model_version_download_uri(name, v).removeprefix("file://")
    stored = next(p for p in __import__("pathlib").Path(root).rglob("checkpoint.pt"))
    original = stored.read_bytes()
    try:
        ckpt = load_checkpoint(stored)
        ckpt["threshold"] = 0.01  # a quieter model: accepts almost everything
        import torch

        torch.save(ckpt, stored)
        with pytest.raises(RegistryError, match="changed after registration"):
            load_version(name, v, engine="torch")
        shutil.rmtree(workdir / "pyfunc-cache", ignore_errors=True)
        (workdir / "pyfunc-cache").mkdir()
        with pytest.raises(Exception, match="does not match the sha256 recorded at registration"):
            mlflow.pyfunc.load_model(f"models:/{name}/{v}", dst_path=str(workdir / "pyfunc-cache"))
    finally:
        stored.write_bytes(original)
    assert load_version(name, v, engine="torch")[0].threshold == 0.5


def test_serve_never_creates_an_empty_registry(tmp_path, monkeypatch, capsys):
    """A wrong or missing SQLite path must not become a fresh, empty store (an empty registry reads as "no
    champion"): `eulernet serve` refuses before Ray starts and the file is not created."""
    from pathlib import Path

    from flows.cli import main

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)
    db = tmp_path / "nowhere" / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    import mlflow

    previous = mlflow.get_tracking_uri()
    try:
        assert main(["serve", "--port", "18999", "--allow-anonymous"]) == 2
    finally:
        mlflow.set_tracking_uri(previous)  # serve points the process-global fluent API at its store
    assert f"no MLflow registry at {db}" in capsys.readouterr().err
    assert not db.exists() and not db.parent.exists()


def test_a_dvc_experiment_registers_a_candidate_but_never_moves_champion(workdir, capsys, monkeypatch):
    """`dvc exp run` (DVC sets DVC_EXP_NAME in every experiment's stages) with auto_promote on: the better model is
    registered and tagged with the experiment, champion stays where it was until `eulernet promote` says so."""
    from mlflow import MlflowClient

    client = MlflowClient()
    before = client.get_model_version_by_alias(NAME, "champion").version
    write_eval(workdir, acer=0.001, threshold=0.5)  # better than any champion so far
    monkeypatch.setenv("DVC_EXP_NAME", "sweep-lr-1")
    assert cli("register", "--params", "params.yaml") == 0
    out = capsys.readouterr().out
    assert "champion is not moved by experiments" in out and "PROMOTED" not in out
    reg = registered(workdir)
    assert reg["decision"] is None and reg["champion_version"] == str(before)
    assert client.get_model_version(NAME, reg["version"]).tags["dvc_experiment"] == "sweep-lr-1"
    monkeypatch.delenv("DVC_EXP_NAME")
    assert cli("promote", "--params", "params.yaml", "--version", reg["version"]) == 0  # the decision, made apart
    assert "PROMOTED" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == reg["version"]


def test_register_carries_the_checkpoints_data_gates_record(workdir):
    """What training recorded about its data (``extra.data_gates``) becomes the version tag promotion reads."""
    from mlflow import MlflowClient

    from components.inference.checkpoint import build_meta, save_checkpoint
    from components.model.eulernet import create_model
    from components.registry.register import register

    ckpt = save_checkpoint(workdir / "skipped.pt", create_model("c4", width=0.125),
                           build_meta(variant="c4", crop_size=64, clips_per_video=1,
                                      extra={"data_gates": "skipped"}))
    version = register(ckpt, NAME, {"acer": 0.0}, threshold=0.5, test_data_hash="h")
    assert MlflowClient().get_model_version(NAME, version).tags["data_gates"] == "skipped"


def _fresh_venv(root: Path, requirements: Path) -> Path:
    """A new virtual environment holding only ``requirements``, installed with ``--no-index`` from a local wheel
    folder, as on a serving host without a package index. The folder is built first with this machine's own
    index (pip's cache makes that quick on a second run); nothing of this repository is installed."""
    import subprocess
    import sys

    wheels, venv = root / "wheels", root / "venv"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-r", str(requirements), "-w", str(wheels)],
                   check=True, timeout=1500)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-index", "--find-links",
                    str(wheels), "-r", str(requirements)], check=True, timeout=1500)
    return venv / "bin/python"


@pytest.mark.slow
def test_the_registered_model_loads_in_a_fresh_venv_with_no_index(workdir, real_face_rgb, tmp_path):
    """A registered version carries the library's code (``code_paths``) and pins what it imports: a new virtual
    environment with only the model's own requirements, installed from a wheel folder with no index, loads it by
    alias with MLflow and scores a video, with the code from inside the model."""
    import subprocess

    import mlflow.pyfunc

    from components.data.video import write_video

    repo = str(Path(__file__).resolve().parents[2])
    requirements = Path(mlflow.pyfunc.get_model_dependencies(f"models:/{NAME}@champion"))
    pins = [line.strip() for line in requirements.read_text().splitlines() if line.strip()]
    assert any(p.startswith("mlflow==") for p in pins) and any(p.startswith("torch==") for p in pins), pins
    python = _fresh_venv(tmp_path, requirements)
    frames = np.repeat(real_face_rgb[None, ::2, ::2], 12, axis=0)  # (12, 256, 256, 3)
    video = tmp_path / "clip.mp4"
    write_video(video, frames, fps=10)
    code = f"""
try:
    import components  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the project is importable in the fresh venv: the test would prove nothing")
import mlflow.pyfunc, pandas as pd
model = mlflow.pyfunc.load_model("models:/{NAME}@champion")
import components
print("CODE", components.__file__)
print(model.predict(pd.DataFrame({{"video": [{str(video)!r}]}})).to_json(orient="records"))
"""
    env = {**os.environ, "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([str(python), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    where = next(line for line in lines if line.startswith("CODE "))
    assert "/code/components/" in where and not where.split()[1].startswith(repo)
    (row,) = json.loads(lines[-1])
    assert row["error"] is None and 0.0 <= row["score"] <= 1.0 and row["decision"] in ("live", "spoof")
