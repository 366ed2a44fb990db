"""The model card is written from what the registry and the checkpoint hold: every figure in it is the version's
recorded metric, and a figure that one video can move is said to be unresolved."""
from __future__ import annotations


def _inference(**kw):
    from components.inference.config import InferenceConfig

    return InferenceConfig(variant="c3", crop_size=64, clip_len=4, clip_interval=3, threshold=0.42, **kw)


def test_card_quotes_the_recorded_figures_and_says_what_one_video_moves():
    from components.registry.card import model_card

    info = {"name": "eulernet", "version": "7", "run_id": "abc123",
            "metrics": {"acer": 0.0833, "apcer": 0.1667, "bpcer": 0.0, "auc": 0.9722, "eer": 0.1667,
                        "apcer_worst": 1.0, "n_live": 6, "n_attack": 6, "n_videos": 12},
            "tags": {"test_data_hash": "f00d", "threshold_source": "dev", "data_gates": "skipped"}}
    card = model_card(info, _inference())
    assert card.startswith("# Model card: eulernet v7")
    assert "| 8.33 % | 16.67 % | 0.00 % | 0.9722 | 16.67 % | 100.00 % |" in card
    assert "12 videos (6 live, 6 attacks)" in card and "`f00d`" in card
    assert "One attack video moves its rate by 16.7 points: unresolved at this size." in card
    assert "threshold 0.42 (source: dev)" in card and "c3" in card and "64-px crops" in card
    assert "Data gates: skipped (never promoted without --force)" in card


def test_a_local_checkpoint_card_says_nothing_was_recorded():
    from components.registry.card import model_card

    card = model_card({"name": "local", "version": "local"}, _inference())
    assert "Not recorded" in card and "| ACER |" not in card and "Data gates: not recorded" in card
