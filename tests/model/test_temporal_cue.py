"""A fast test that can fail: live and attack clips alike frame by frame, different only over time.

Each clip is a random texture under a brightness-and-chroma factor. Live: the factor follows a pulse over the
clip's frames (random phase). Attack: the factor is constant, drawn from the same distribution as one live
frame's. So every single frame of either class comes from the same distribution, and only the change over time
tells them apart. The default variant (temporal filtering in FCAM, Eulerian input) must learn it in well under a
minute of CPU; the single-frame control (no FCAM, no Eulerian input: no frame sees another) must not.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from components.metrics.rates import auc
from components.model.eulernet import TEST_WIDTH, create_model

S, T = 32, 4


def _clips(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray]:
    y = rng.integers(0, 2, n)  # 1 live, 0 attack
    base = rng.uniform(-0.6, 0.6, (n, 1, 3, 1, 1)) + 0.3 * rng.standard_normal((n, 1, 3, S, S))
    t = np.arange(T)[None, :]
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    live = np.sin(2 * np.pi * t / T + phase)  # (n, T): a pulse over the clip
    still = np.sin(rng.uniform(0, 2 * np.pi, (n, 1))).repeat(T, axis=1)  # same marginal, constant
    factor = np.where(y[:, None] == 1, live, still)  # (n, T)
    chroma = np.array([0.1, 0.25, 0.05])[None, None, :, None, None]
    x = base + factor[:, :, None, None, None] * chroma + 0.02 * rng.standard_normal((n, T, 3, S, S))
    return torch.tensor(x, dtype=torch.float32), y  # (n, T, 3, S, S), (n,)


def _train_and_score(variant: str, **overrides) -> float:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = create_model(variant, width=TEST_WIDTH, **overrides)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    m = S // 8
    model.train()
    for _ in range(120):
        x, y = _clips(16, rng)
        target = torch.tensor(y, dtype=torch.float32)[:, None, None, None].expand(-1, T, m, m)  # (B, T, M, M)
        loss = model.loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = _clips(256, np.random.default_rng(1))
    with torch.no_grad():
        scores = model(x).mean(dim=(1, 2, 3)).numpy()  # (N,) clip score = mean of its map
    return auc(scores, y)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_default_variant_learns_a_cue_that_exists_only_over_time_and_the_single_frame_control_does_not():
    temporal = _train_and_score("eulernet")
    single = _train_and_score("c4", diirf_initial="zero")
    assert temporal >= 0.9, f"default variant AUC {temporal:.3f} on a time-only cue"
    assert single <= 0.65, f"single-frame control AUC {single:.3f}: the frames alone must not tell"
