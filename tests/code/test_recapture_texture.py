"""benchmarks/recapture_texture.py: its simulator does what its docstring claims (a screen compresses the tone
range, a second camera blurs), its crop is centred on the face, and its figures are the rates they name."""
from __future__ import annotations

import numpy as np
import pandas as pd

BENCHMARK = "recapture_texture"  # the script the bench fixture loads (tests/code/conftest.py)


def _gradient() -> np.ndarray:
    return np.repeat(np.repeat(np.linspace(0, 255, 96, dtype=np.float32)[None, :, None], 96, 0), 3, 2).astype(np.uint8)


def test_a_screen_lifts_black_and_dims_white_and_the_seed_decides(bench):
    img = _gradient()
    for seed in range(5):
        out = bench.display(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        lo, hi = np.percentile(out.mean(axis=2), [1, 99])
        assert lo >= 0.02 * 255 * 0.85 - 1 and hi - lo < 0.98 * 255  # the range shrinks on every draw
    a = bench.display(img, np.random.default_rng(3))
    assert np.array_equal(a, bench.display(img, np.random.default_rng(3)))


def test_a_second_camera_blurs_fine_texture(bench):
    check = ((np.indices((96, 96)).sum(axis=0) % 2) * 255).astype(np.uint8)
    img = np.repeat(check[..., None], 3, axis=2)  # a one-pixel checkerboard: all its energy at Nyquist
    out = bench.camera(img, np.random.default_rng(0))
    assert np.abs(np.diff(out.astype(float), axis=1)).mean() < 0.5 * np.abs(np.diff(img.astype(float), axis=1)).mean()
    live = bench.live_view(img, np.random.default_rng(0), "display")
    assert np.abs(np.diff(live.astype(float), axis=1)).mean() > 0.8 * 255 * 0.85  # the display variant leaves live sharp


def test_the_crop_is_centred_on_the_box(bench):
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[80:120, 180:220] = 255  # a 40-px face box at (180, 80)-(220, 120)
    c = bench.crop(frame, (180, 80, 220, 120), scale=2.0)  # 80 px around it -> 96 px: the box fills the middle half
    assert c.shape == (96, 96, 3)
    assert c[30:66, 30:66].min() > 200 and c[:20].max() < 30 and c[:, -20:].max() < 30


def test_the_net_reads_a_batch_of_crops(bench):
    import torch

    x = bench.to_tensor([_gradient(), _gradient()])
    assert x.shape == (2, 3, 96, 96) and float(x.min()) == -1.0
    assert bench.make_net()(x).shape == (2,) and isinstance(bench.make_net()(x), torch.Tensor)


def test_figures_are_the_rates_they_name(bench):
    scores = pd.DataFrame({"label": [1, 1, 0, 0], "attack_type": ["live", "live", "replay", "replay"],
                           "source": ["a", "b", "a", "b"], "score": [3.0, 4.0, 1.0, 5.0],
                           "threshold": [3.5, 2.0, 3.5, 2.0]})
    f = bench.figures(scores, n_boot=200)
    # live 3 < its fold's 3.5: rejected (1 of 2); replay 5 >= 2 accepted, 1 < 3.5 refused; AUC 2 of 4 pairs.
    assert f["bpcer"] == 0.5 and f["rows"]["replay"]["apcer"] == 0.5 and f["rows"]["replay"]["auc"] == 0.5
