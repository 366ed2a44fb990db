"""Stage `evaluate`: artifacts/model/checkpoint.pt + artifacts/shards -> artifacts/eval/.

Video-level APCER/BPCER/ACER/HTER/AUC at the threshold the checkpoint carries (chosen on dev by training, params
`train.threshold_rule`), applied to dev and test; per-attack APCER and the worst; breakdowns; ROC/DET; Grad-CAM
figures. The checkpoint is not modified; metrics.json records the threshold it was computed at.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from flows.args import params_option
from flows.errors import StageError
from flows.gates import checked_gates, gates_options

HELP = "video-level APCER/BPCER/ACER at the checkpoint's dev-chosen threshold, on dev and test"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    params_option(parser, "evaluate")
    parser.add_argument("--checkpoint", default="artifacts/model/checkpoint.pt", help="Predictor checkpoint")
    parser.add_argument("--shards", default="artifacts/shards", help="labeled shards (dev and test splits)")
    parser.add_argument("--out", default="artifacts/eval", help="output folder")
    parser.add_argument("--headline", default="metrics/eval.json",
                        help="the few headline numbers, a small file tracked by git (dvc exp show / metrics diff)")
    gates_options(parser, "evaluate")


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def run(args: argparse.Namespace) -> int:
    from components.config import ConfigError, load_section
    from components.metrics.evaluate import EvalConfig, EvaluationError, evaluate_checkpoint

    try:
        cfg = load_section(EvalConfig, "evaluate", args.params)
        if not Path(args.checkpoint).is_file():
            raise FileNotFoundError(f"{args.checkpoint} not found: run `eulernet train` first")
        from components.runtime import header

        header("evaluate", f"{args.checkpoint} on the dev and test clips of {args.shards} "
                           f"at the checkpoint's dev-chosen threshold -> {args.out}")
        gates = checked_gates(args)  # figures on data that never passed the gates are refused, or marked
        report = evaluate_checkpoint(args.checkpoint, args.shards, args.out, cfg, progress=True,
                                     data_gates=gates)
    except (ConfigError, EvaluationError, FileNotFoundError, ValueError) as exc:
        raise StageError(exc) from None
    print(f"threshold {report['threshold']:.4f} ({report.get('threshold_rule') or 'a rule'} on dev, from the "
          f"checkpoint); test: "
          f"ACER {_pct(report['acer'])}, APCER {_pct(report['apcer'])} (worst {_pct(report.get('apcer_worst'))} "
          f"{report.get('worst_attack_type') or ''}), BPCER {_pct(report['bpcer'])}, "
          f"AUC {'n/a' if report.get('auc') is None else format(report['auc'], '.4f')}")
    if report.get("note"):
        print(f"note: {report['note']}")
    from components.files import write_json
    from components.metrics.report import headline

    write_json(args.headline, headline(report))  # small, git-tracked: what `dvc exp show` compares
    print(f"metrics: {args.headline} (headline), {Path(args.out) / 'metrics.json'} (full report)")
    return 0
