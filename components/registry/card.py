"""A registered version's model card: what it decides on, how it was measured, what it was not measured on.

One function writes it from what the registry and the checkpoint already hold (the version's metric and data
tags, the checkpoint's inference config), so the card logged at ``register`` (an MLflow artifact,
``model_card.md``) and the one a replica serves at ``/v1/model/card`` are the same text for the same version,
and no figure in it is typed by hand.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CARD_FILE = "model_card.md"

_LIMITS = (
    "- The figures above come from the test split of the data this pipeline was run on. On the embedded sample "
    "that is rendered video of three identities: they say the pipeline learns, not that the model works on real "
    "faces. Measure real recordings with `eulernet benchmark realworld --data DIR --model models:/NAME/VERSION`.",
    "- A face the landmark backend cannot find is refused (422 `no_face`), not scored.",
    "- Inputs: bundled faces, the dlib landmark model and third-party weights keep their own terms; see the "
    "repository's README (\"Landmark models and their licences\") and docs/data.md.",
)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * float(v):.2f} %"


def _resolution(n: float | None, what: str) -> str:
    if not n:
        return ""
    step = 100.0 / float(n)
    return (f" One {what} video moves its rate by {step:.1f} points" +
            (": unresolved at this size." if n < 30 else "."))


def model_card(info: Mapping[str, Any], inference: Any) -> str:
    """Markdown card for one model: ``info`` as :func:`~components.registry.versions.version_info` gives it (name,
    version, metrics, tags, run_id; a local checkpoint has no metrics), ``inference`` its
    :class:`~components.inference.config.InferenceConfig`."""
    m, tags = dict(info.get("metrics") or {}), dict(info.get("tags") or {})
    name, version = info.get("name", "?"), info.get("version", "?")
    head = inference.video_head
    decides = (f"a logistic head over {', '.join(head.features)} of the whole video"
               if head is not None else "the mean of its clip scores")
    lines = [
        f"# Model card: {name} v{version}",
        "",
        "## What it decides",
        f"EulerNet ({inference.variant}, {inference.label_type} maps) scores clips of {inference.clip_len} frames "
        f"{inference.clip_interval} apart, cut as {inference.crop_size}-px crops around the face the "
        f"`{inference.landmark_backend}` landmark backend finds; a video's score is {decides}. Live when the score "
        f"is at least the threshold {inference.threshold if inference.threshold is not None else 'n/a'}"
        f" (source: {tags.get('threshold_source', 'the checkpoint')}).",
        "",
        "## How it was measured",
    ]
    if not m:
        lines.append("Not recorded: this model was not registered with an evaluation (a local checkpoint).")
    else:
        n_live, n_attack = m.get("n_live"), m.get("n_attack")
        lines += [
            f"Test split, {int(m.get('n_videos', 0)) or 'n/a'} videos ({int(n_live or 0)} live, {int(n_attack or 0)} "
            f"attacks), test data sha256 `{tags.get('test_data_hash', 'n/a')}`; command `eulernet evaluate`.",
            "",
            "| ACER | APCER | BPCER | AUC | EER | worst attack type APCER |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {_pct(m.get('acer'))} | {_pct(m.get('apcer'))} | {_pct(m.get('bpcer'))} | "
            f"{'n/a' if m.get('auc') is None else format(m['auc'], '.4f')} | {_pct(m.get('eer'))} | "
            f"{_pct(m.get('apcer_worst'))} |",
            "",
            ("Rates at the threshold above." + _resolution(n_attack, "attack") + _resolution(n_live, "live")).strip(),
        ]
    gates = tags.get("data_gates")
    lines += [
        "",
        "## Data and provenance",
        f"- Data gates: {gates or 'not recorded'}" + (" (never promoted without --force)" if gates == "skipped"
                                                       else ""),
        f"- Registration run (MLflow): {info.get('run_id') or 'n/a'}"
        + (f"; DVC experiment `{tags['dvc_experiment']}`" if tags.get("dvc_experiment") else ""),
        "",
        "## Limits",
        *_LIMITS,
        "",
    ]
    return "\n".join(lines)


__all__ = ["CARD_FILE", "model_card"]
