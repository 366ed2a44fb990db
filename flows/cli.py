"""`eulernet` — one console script fronting every stage. `eulernet <command> --help` explains each.

Each flow module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int | None``.
Modules are imported only when their command runs, so `--help` stays fast and no stage pays for another's imports.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> flow module; order is the order shown in --help (pipeline order first).
COMMANDS: dict[str, str] = {
    "generate": "flows.generate",
    "ingest": "flows.ingest",
    "validate": "flows.validate",
    "label": "flows.label",
    "train": "flows.train",
    "evaluate": "flows.evaluate",
    "register": "flows.register",
    "promote": "flows.register",
    "rollback": "flows.register",
    "serve": "flows.serve",
    "predict": "flows.predict",
    "ablation": "flows.ablation",
    "benchmark": "flows.benchmark",
    "reference": "flows.reference",
    "monitor": "flows.monitor",
}

# Short help shown without importing heavy modules.
SUMMARIES: dict[str, str] = {
    "generate": "write a synthetic live/spoof video dataset (the embedded sample is made this way)",
    "ingest": "build the manifest from a dataset (sample, generic CSV, OULU-NPU)",
    "validate": "run the Great Expectations data-quality gates on the manifest",
    "label": "landmarks -> face crops -> label maps, as Parquet shards (Ray Data)",
    "train": "train EulerNet with Ray Train, tracked in MLflow",
    "evaluate": "video-level APCER/BPCER/ACER at the checkpoint's dev-chosen threshold, on dev and test",
    "register": "log the model to the MLflow registry as 'candidate' and promote if good enough",
    "promote": "move the 'champion' alias to a candidate when it is at least as good",
    "rollback": "move 'champion' back to the previous champion",
    "serve": "run the Ray Serve liveness endpoint for models:/<name>@champion",
    "predict": "score one video file with a checkpoint or a registered model",
    "ablation": "train and evaluate the paper's Table I variants and write the table",
    "benchmark": "temporal (synthetic, held-out identities) or realworld (real recordings) benchmark -> summary.json",
    "reference": "train the reference model (EulerNet + video head) on real recordings; figures leave-one-source-out",
    "monitor": "check logged requests against the training videos' profile (drift report, exit 1 on drift)",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eulernet",
        description="EulerNet face anti-spoofing: data, labeling, training, evaluation, registry and serving.",
        epilog="Typical use: `dvc repro` runs ingest..register; `eulernet serve` then serves the champion.",
    )
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also stream Ray's own logs and workers' output to the console (default: only "
                             "in Ray's log files; the env variable EULERNET_VERBOSE=1 does the same)")
    # Also accepted after the command (`eulernet train --verbose`); SUPPRESS keeps the global value otherwise.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="as `eulernet --verbose <command>`")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMANDS:
        p = sub.add_parser(name, help=SUMMARIES[name], description=SUMMARIES[name], parents=[common])
        if name == command:
            module = importlib.import_module(COMMANDS[name])
            module.add_arguments(p) if name not in ("promote", "rollback", "register") else \
                getattr(module, f"add_{name}_arguments")(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from components.runtime import configure_logging, quiet_offline_env

    quiet_offline_env()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    # Once, before any stage imports MLflow or Ray: quiet unless --verbose or EULERNET_VERBOSE=1.
    configure_logging(True if args.verbose else None)
    module = importlib.import_module(COMMANDS[args.command])
    runner = getattr(module, f"run_{args.command}", None) or module.run
    from flows.errors import StageError

    try:
        rc = runner(args)
    except StageError as exc:  # the one place a refusal is printed
        print(f"eulernet {exc.command or args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
