"""benchmarks/pulse_cue.py compares what its table says it compares: equal spans per row, the unequal span only
in its own row, and a pulse series cut to each length."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

BENCHMARK = "pulse_cue"  # the script the bench fixture loads (tests/code/conftest.py)


def test_snr_by_length_reads_only_the_first_seconds(bench):
    fps = 30.0
    t = np.arange(300) / fps
    rgb = np.array([180.0, 120.0, 100.0])[None] * (1 + np.r_[np.zeros(75), 0.004 * np.sin(2 * np.pi * 1.2 * t[75:])]
                                                    [:, None] * np.array([0.3, 1.0, 0.6])[None])
    rgb = rgb + np.random.default_rng(0).normal(0, 0.2, rgb.shape)
    series = np.repeat(rgb[:, None], 3, axis=1)  # (F, 3 patches, 3)
    got = bench.snr_by_length(series, fps, [2.5, 10.0, 20.0])
    # The pulse starts after 2.5 s: the first 2.5 s hold none, the 10 s do; 20 s are more than the video has.
    assert got["pulse_10"] - got["pulse_2.5"] > 6.0 and np.isnan(got["pulse_20"])


def test_comparisons_pair_equal_spans_and_name_the_unequal_one(bench):
    # Live SNR grows with the span and the stills sit among live videos of their own span (5 of 8 pairs ranked
    # live higher at either length); only the unequal row, live over 10 s against 2.5-s stills, separates them.
    df = pd.DataFrame({
        "path": [f"v{i}" for i in range(8)],
        "attack_type": ["live"] * 4 + ["still_2.5"] * 2 + ["still_10"] * 2,
        "source": ["a", "b", "a", "b", "a", "b", "a", "b"],
        "pulse_2.5": [-5.0, -4.0, -6.0, -3.0, -4.5, -5.5, np.nan, np.nan],
        "pulse_10": [0.0, 1.0, 2.0, 3.0, np.nan, np.nan, 1.5, 0.5],
    })
    rows = {r["compare"]: r for r in bench.comparisons(df, [2.5, 10.0], n_boot=200, seed=0)}
    assert rows["live vs held still, both 2.5 s"]["auc"] == pytest.approx(5 / 8)
    assert rows["live vs held still, both 10 s"]["auc"] == pytest.approx(5 / 8)
    unequal = rows["live over 10 s vs held still of 2.5 s (unequal spans)"]
    assert unequal["auc"] == 1.0 and unequal["n_attack"] == 2 and unequal["length_s"] is None
