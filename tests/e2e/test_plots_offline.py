"""`dvc plots show` renders the pipeline's three plots offline, each once, in headless Chromium.

A throwaway git + DVC repo holds the project's dvc.yaml, .dvc/config and infra/plots/offline.html (the page
template with Vega inlined) and small history/ROC/DET CSVs written with the real curve functions. The real
`dvc plots show` writes dvc_plots/index.html; Chromium, with every host name unresolvable, screenshots it and
the plot line colour must fill three separate areas. The same check on DVC's default (CDN) page, as a control,
must find nothing: that is what the template fixes.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")

# Byte for byte the npm packages' build/*.min.js (see infra/plots/README.md).
VENDORED = {
    "vega@6.4.0": "8f6a3587cf8d4f42c7e08120e3eb05d067e746d554e39d2dcf52acc0bd5ba28f",
    "vega-lite@6.5.0": "83e215e84e308ee8688fa6503ba0f1cf8a3c05c0d61df2841a0b92bf86809e00",
    "vega-embed@7.3.0": "b1455caba2fb1a72fb46025ba0ba1316e2dbc7f0dd40a3f6040172bf9c08ba91",
}
LINE_RGB = (0x94, 0x5D, 0xD6)  # DVC's colour for the first revision (dvc_render.vega OPTIONAL_ANCHOR_RANGES)


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _write_curves(proj: Path) -> None:
    from components.files import write_csv
    from components.metrics.rates import det_curve, roc_curve

    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(30, int), np.zeros(30, int)]
    scores = np.clip(np.r_[rng.normal(0.7, 0.15, 30), rng.normal(0.35, 0.15, 30)], 0, 1)
    fpr, tpr, thr = roc_curve(scores, labels)
    apcer, bpcer, dthr = det_curve(scores, labels)
    # Same files and columns as flows/train.py (history.csv) and components/metrics/evaluate.py (roc/det.csv).
    epochs = np.arange(1, 9)
    history = pd.DataFrame({"epoch": epochs, "train_loss": 0.7 * 0.75 ** epochs, "train_clips": 108,
                            "epoch_time_s": 30.0, "clips_per_s": 3.6, "lr": 1e-3, "dev_apcer": 0.5 / epochs,
                            "dev_bpcer": 0.4 / epochs, "dev_acer": 0.45 / epochs, "dev_threshold": 0.5, "dev_auc": 0.9})
    write_csv(history, proj / "artifacts/model/history.csv")
    write_csv(pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr}), proj / "artifacts/eval/roc.csv")
    write_csv(pd.DataFrame({"apcer": apcer, "bpcer": bpcer, "threshold": dthr}), proj / "artifacts/eval/det.csv")


def _screenshot(page: Path, out: Path) -> np.ndarray:
    profile = out.parent / f"{out.stem}-profile"
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
         "--disable-background-networking", "--host-resolver-rules=MAP * ~NOTFOUND",  # no network at all
         f"--user-data-dir={profile}", "--hide-scrollbars", "--window-size=1000,1600",
         "--virtual-time-budget=15000", f"--screenshot={out}", page.as_uri()],
        capture_output=True, timeout=90, check=False)
    assert out.is_file(), "chromium wrote no screenshot"
    from PIL import Image

    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def _plots_drawn(img: np.ndarray, reach: int = 15) -> list[tuple[int, int, int, int, int]]:
    """Separate areas of the page drawn in the plot line colour: (left, top, right, bottom, line pixels) each.

    Line pixels within ``reach`` of each other join one area (dashes, the legend swatch beside its plot);
    DVC lays the plots out side by side or stacked, ~100 px of axis labels, slider and title between them.
    Areas too small to be a curve (a stray swatch) are left out.
    """
    from scipy import ndimage

    hit = np.abs(img - np.array(LINE_RGB)).sum(-1) <= 60
    areas, _ = ndimage.label(ndimage.binary_dilation(hit, iterations=reach))
    drawn = []
    for ys, xs in ndimage.find_objects(areas):
        pixels = int(hit[ys, xs].sum())
        if pixels >= 150 and max(ys.stop - ys.start, xs.stop - xs.start) >= 60 + 2 * reach:
            drawn.append((xs.start, ys.start, xs.stop, ys.stop, pixels))
    return drawn


def test_plots_show_renders_each_plot_once_offline(tmp_path):
    template = REPO / "infra/plots/offline.html"
    for package, digest in VENDORED.items():
        block = re.search(rf'<script data-package="{re.escape(package)}">\n(.*?)\n    </script>',
                          template.read_text(encoding="utf-8"), re.S)
        assert block, f"{package} is not inlined in {template}"
        assert hashlib.sha256(block.group(1).encode()).hexdigest() == digest, f"{package} differs from npm's build"

    proj = tmp_path / "proj"
    (proj / "infra/plots").mkdir(parents=True)
    (proj / "artifacts/model").mkdir(parents=True)
    (proj / "artifacts/eval").mkdir(parents=True)
    shutil.copy(REPO / "dvc.yaml", proj / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", proj / "params.yaml")  # dvc.yaml interpolates ${data.root} from it
    shutil.copy(template, proj / "infra/plots/offline.html")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    _run(["git", "init", "-q"], proj, env)
    _run(["dvc", "init", "-q"], proj, env)
    shutil.copy(REPO / ".dvc/config", proj / ".dvc/config")  # the project's own setting: plots.html_template
    _write_curves(proj)

    _run(["dvc", "plots", "show"], proj, env)  # plain, as the README says
    page = proj / "dvc_plots/index.html"
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"<script\b[^>]*\bsrc\s*=", html, re.I), "the page loads a script from elsewhere"
    assert not re.search(r"<link\b[^>]*\bhref\s*=\s*[\"']?https?:", html, re.I)
    assert "cdn.jsdelivr" not in html
    names = [next(iter(p)) if isinstance(p, dict) else p for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]]
    assert len(names) == 3
    for name in names:
        div_id = re.sub(r"[!@#$%^&*()\[\]{};,<>?\\/:.|`~=_+ ]", "_", name)
        assert html.count(f'<div id = "{div_id}"') == 1, f"{name} is not on the page exactly once"
    assert html.count("vegaEmbed('#") == 3

    drawn = _plots_drawn(_screenshot(page, tmp_path / "offline.png"))
    assert len(drawn) == 3, f"expected three plotted curves, found {drawn} in {tmp_path / 'offline.png'}"

    # Control: DVC's default page (scripts from a CDN) on the same data, same offline browser: blank.
    from dvc_render.html import PAGE_HTML

    (proj / "cdn.html").write_text(PAGE_HTML, encoding="utf-8")
    _run(["dvc", "plots", "show", "--html-template", "cdn.html", "-o", "dvc_plots_cdn"], proj, env)
    cdn_page = proj / "dvc_plots_cdn/index.html"
    assert "cdn.jsdelivr.net" in cdn_page.read_text(encoding="utf-8")
    assert _plots_drawn(_screenshot(cdn_page, tmp_path / "cdn.png")) == []
