"""The ONNX Runtime engine: same maps and scores as torch, dynamic batch, and a real fallback to torch.

One export per module (the torch.export based exporter takes ~5-20 s on 2 busy cores); every Predictor here
reuses that graph. The model is the repository's default variant (FCAM + DIIRF over time + Eulerian input
stage + Residual Pyramid) with weights and BN statistics moved away from their initial values.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from components.inference.checkpoint import build_meta, make_checkpoint
from components.inference.config import InferenceConfig
from components.inference.onnx_engine import OnnxEngine, OnnxUnavailable, export_onnx
from components.inference.predictor import Predictor
from components.inference.tensors import clip_scores
from components.model.eulernet import TEST_WIDTH, create_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

S = 32
REPO = Path(__file__).resolve().parents[2]


def _trained_like(variant: str = "eulernet"):
    torch.manual_seed(0)
    model = create_model(variant, width=TEST_WIDTH)
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.out.weight.normal_(std=0.3)  # the output layer starts near zero: give the maps some range
        model(torch.randn(2, 4, 3, S, S))  # moves BN running stats
    return model.eval()


@pytest.fixture(scope="module")
def exported():
    """``(checkpoint dict, ONNX graph bytes)`` of one trained-like default-variant model."""
    model = _trained_like()
    ckpt = make_checkpoint(model, build_meta(variant="eulernet", crop_size=S, mean=(0.4, 0.45, 0.5),
                                             std=(0.2, 0.25, 0.3), threshold=0.4))
    graph = export_onnx(model, S, inference=InferenceConfig.from_meta(ckpt))  # verified against torch inside
    return ckpt, graph


@pytest.fixture(scope="module")
def sample_clips(real_face_rgb):
    """(6, 4, S, S, 3) uint8: a real face moving, the same face with a brightness pulse, a still face, and noise."""
    import cv2

    face = cv2.resize(real_face_rgb[20:260, 110:350], (S + 8, S + 8), interpolation=cv2.INTER_AREA)
    moving = np.stack([face[i:i + S, 2 * i:2 * i + S] for i in range(4)])
    pulse = np.stack([np.clip(face[4:4 + S, 4:4 + S].astype(int) + d, 0, 255) for d in (0, 6, 12, 6)]).astype(np.uint8)
    still = np.repeat(face[None, :S, :S], 4, axis=0)
    noise = np.random.default_rng(0).integers(0, 256, size=(3, 4, S, S, 3), dtype=np.uint8)
    return np.concatenate([moving[None], pulse[None], still[None], noise])


def test_onnx_scores_and_maps_match_torch(exported, sample_clips):
    ckpt, graph = exported
    torch_pred = Predictor.from_checkpoint(ckpt)
    onnx_pred = Predictor.from_checkpoint(ckpt, engine="onnx", onnx_graph=graph)
    assert torch_pred.engine == "torch" and onnx_pred.engine == "onnx"
    want, got = torch_pred.predict_maps(sample_clips), onnx_pred.predict_maps(sample_clips)
    assert got.shape == want.shape == (6, 4, S // 8, S // 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx_pred.score_clips(sample_clips), torch_pred.score_clips(sample_clips),
                               atol=1e-4, rtol=0)
    # The clips differ from each other: agreement is not two constant outputs matching.
    assert np.ptp(torch_pred.score_clips(sample_clips)) > 2e-3 and np.ptp(want) > 2e-2


def test_dynamic_batch_axis(exported, sample_clips):
    ckpt, graph = exported
    engine = OnnxEngine(graph, threads=1)
    assert isinstance(engine.input_shape[0], str) and engine.input_shape[1:] == (4, 3, S, S)
    torch_pred = Predictor.from_checkpoint(ckpt)
    for batch in (1, 4):
        pred = Predictor.from_checkpoint(ckpt, engine="onnx", onnx_graph=graph, batch_size=batch)
        clips = sample_clips[:batch]
        np.testing.assert_allclose(pred.predict_maps(clips), torch_pred.predict_maps(clips), atol=1e-4, rtol=0)
    # The one-thread session a busy replica uses gives the same maps as the multi-thread one.
    two = Predictor.from_checkpoint(ckpt, engine="onnx", onnx_graph=graph, threads=2)
    assert two._onnx.threads == 2 and two._onnx._one_thread is not two._onnx.session
    np.testing.assert_allclose(two.predict_maps(sample_clips, busy=True), two.predict_maps(sample_clips),
                               atol=1e-5, rtol=0)
    # Batches of 4 then 2 through one session (6 clips, batch_size 4).
    pred = Predictor.from_checkpoint(ckpt, engine="onnx", onnx_graph=graph, batch_size=4)
    np.testing.assert_allclose(pred.score_clips(sample_clips), torch_pred.score_clips(sample_clips), atol=1e-4)


def test_graph_carries_the_inference_config(exported):
    ckpt, graph = exported
    meta = OnnxEngine(graph, threads=1).inference_meta
    assert meta == json.loads(json.dumps(InferenceConfig.from_meta(ckpt).to_dict()))
    assert meta["crop_size"] == S and meta["mean"] == [0.4, 0.45, 0.5] and meta["threshold"] == 0.4


def test_auto_uses_the_graph_and_with_threshold_keeps_the_engine(exported, sample_clips):
    ckpt, graph = exported
    pred = Predictor.from_checkpoint(ckpt, engine="auto", onnx_graph=graph, threads=1)
    assert pred.engine == "onnx" and pred._onnx.threads == 1
    other = pred.with_threshold(0.7)
    assert other.engine == "onnx" and other.threshold == 0.7
    np.testing.assert_array_equal(other.score_clips(sample_clips[:2]), pred.score_clips(sample_clips[:2]))


def test_bad_engine_choices(exported):
    ckpt, _ = exported
    with pytest.raises(ValueError, match="engine must be one of"):
        Predictor.from_checkpoint(ckpt, engine="tensorrt")
    model, inference = _trained_like(), InferenceConfig.from_meta(ckpt)
    with pytest.raises(OnnxUnavailable, match="runs on the CPU"):  # checked before anything touches the device
        Predictor(model, inference, device="cuda", engine="onnx", onnx_graph=b"unused")
    assert Predictor(model, inference, device="cuda", engine="auto", onnx_graph=b"unused").engine == "torch"


def test_auto_falls_back_to_torch_on_an_unusable_graph(exported, sample_clips):
    ckpt, graph = exported
    with pytest.warns(UserWarning, match="using torch"):
        pred = Predictor.from_checkpoint(ckpt, engine="auto", onnx_graph=b"not an onnx graph")
    assert pred.engine == "torch"
    np.testing.assert_array_equal(pred.score_clips(sample_clips), Predictor.from_checkpoint(ckpt).score_clips(sample_clips))
    with pytest.raises(Exception):  # noqa: B017 -- onnxruntime's own error type for an unparsable model
        Predictor.from_checkpoint(ckpt, engine="onnx", onnx_graph=b"not an onnx graph")
    wrong = ckpt | {"preprocess": ckpt["preprocess"] | {"crop_size": 2 * S}}  # graph cut for S, model run at 2S
    with pytest.raises(OnnxUnavailable, match="takes clips"):
        Predictor.from_checkpoint(wrong, engine="onnx", onnx_graph=graph)


def test_without_onnxruntime_auto_is_torch_and_onnx_is_a_clear_error(exported, sample_clips, tmp_path):
    """A fresh interpreter where ``import onnxruntime`` fails: the real missing-package path."""
    ckpt, graph = exported
    torch.save(ckpt, tmp_path / "ckpt.pt")
    (tmp_path / "model.onnx").write_bytes(graph)
    np.save(tmp_path / "clips.npy", sample_clips)
    code = textwrap.dedent(f"""
        import json, sys
        sys.modules["onnxruntime"] = None  # `import onnxruntime` now raises ImportError
        import numpy as np, torch
        torch.set_num_threads(1)
        from components.inference.predictor import Predictor
        from components.inference.onnx_engine import OnnxUnavailable, onnxruntime_available
        assert not onnxruntime_available()
        clips = np.load({str(tmp_path / 'clips.npy')!r})
        out = {{}}
        for graph in (None, {str(tmp_path / 'model.onnx')!r}):
            p = Predictor.from_checkpoint({str(tmp_path / 'ckpt.pt')!r}, engine="auto", onnx_graph=graph)
            out[str(graph is None)] = [p.engine, p.score_clips(clips).tolist()]
        try:
            Predictor.from_checkpoint({str(tmp_path / 'ckpt.pt')!r}, engine="onnx")
            out["onnx_error"] = None
        except OnnxUnavailable as exc:
            out["onnx_error"] = str(exc)
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    want = Predictor.from_checkpoint(ckpt).score_clips(sample_clips)
    for key in ("True", "False"):  # without a graph and with one: torch either way
        engine, scores = out[key]
        assert engine == "torch"
        np.testing.assert_allclose(scores, want, atol=1e-6)
    assert out["onnx_error"] and "needs onnxruntime" in out["onnx_error"]


def test_session_threads_follow_torch(exported):
    _, graph = exported
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert OnnxEngine(graph).threads == 2
    finally:
        torch.set_num_threads(before)
    assert OnnxEngine(graph, threads=1).threads == 1


def test_engine_contract_is_the_models(exported):
    """Normalised clips in, maps out, as ``EulerNet.forward``: the engine is a drop-in for the model call."""
    ckpt, graph = exported
    x = torch.randn(3, 4, 3, S, S)
    model = Predictor.from_checkpoint(ckpt).model
    with torch.no_grad():
        want = model(x)
    got = OnnxEngine(graph, threads=1)(x)
    assert isinstance(got, torch.Tensor) and got.shape == want.shape
    assert float((got - want).abs().max()) < 1e-4
    np.testing.assert_allclose(clip_scores(got.numpy()), clip_scores(want.numpy()), atol=1e-4)
