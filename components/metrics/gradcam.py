"""Grad-CAM heat maps of EulerNet (the paper's Figs. 8-9): where each depth of the network looks.

The target is the clip's live score (mean predicted map) for a live clip and its attack score (1 - live
score) for an attack, so each map shows the evidence for the clip's own class. Maps are taken after the
three pooling stages (the paper's "Max Pooling 1-3"), after the fusion, and the predicted map itself.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

LAYERS = ("stage1", "stage2", "stage3", "fusion")
TITLES = {"stage1": "max pooling 1", "stage2": "max pooling 2", "stage3": "max pooling 3", "fusion": "fusion"}


def gradcam(predictor, clip: np.ndarray, live: bool) -> dict[str, np.ndarray]:
    """Heat maps for one clip ``(T, S, S, 3)`` uint8: {layer: (T, S, S) in [0, 1]} plus ``map`` (T, M, M)
    (the predicted map) and ``score``."""
    import torch
    import torch.nn.functional as F

    from components.inference.tensors import to_model_input

    model = predictor.model
    acts: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}

    def hook(name):
        def fn(_module, _inputs, output):
            acts[name] = output
            output.register_hook(lambda g: grads.__setitem__(name, g))
        return fn

    handles = [getattr(model, n).register_forward_hook(hook(n)) for n in LAYERS]
    try:
        x = to_model_input(clip[None], predictor.mean, predictor.std, predictor.device)  # (1, T, 3, S, S)
        with torch.enable_grad():
            maps = model(x)  # (1, T, M, M)
            score = maps.mean()
            target = score if live else 1.0 - score
            model.zero_grad(set_to_none=True)
            target.backward()
    finally:
        for h in handles:
            h.remove()
    size = clip.shape[1:3]
    out: dict[str, np.ndarray] = {}
    for name in LAYERS:
        a, g = acts[name].detach(), grads[name].detach()  # (T, C, h, w)
        cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))  # (T, 1, h, w)
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]  # (T, S, S)
        peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12)[:, None, None]
        out[name] = (cam / peak).cpu().numpy()
    out["map"] = maps.detach()[0].cpu().numpy()
    out["score"] = float(score.detach())
    return out


def plot_gradcam(predictor, clip: np.ndarray, live: bool, path, title: str = "") -> Path:
    """One row per frame shown (the first and last of the clip): input, the four Grad-CAMs, predicted map."""
    from components.metrics.plots import _plt, _save

    cams = gradcam(predictor, clip, live)
    plt = _plt()
    frames = sorted({0, clip.shape[0] - 1})
    cols = 2 + len(LAYERS)
    fig, axes = plt.subplots(len(frames), cols, figsize=(1.9 * cols, 2.0 * len(frames)), squeeze=False)
    for r, t in enumerate(frames):
        axes[r, 0].imshow(clip[t])
        axes[r, 0].set_title(f"frame {t}", fontsize=8)
        for c, name in enumerate(LAYERS, start=1):
            axes[r, c].imshow(clip[t])
            axes[r, c].imshow(cams[name][t], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axes[r, c].set_title(TITLES[name], fontsize=8)
        axes[r, -1].imshow(cams["map"][t], cmap="jet", vmin=0, vmax=1)
        axes[r, -1].set_title(f"predicted map {cams['score']:.3f}", fontsize=8)
        for ax in axes[r]:
            ax.axis("off")
    fig.suptitle(title or ("live" if live else "attack"), fontsize=9)
    return _save(fig, path)
