"""`eulernet validate`: Great Expectations gates on artifacts/manifest.csv -> artifacts/quality/.

Writes summary.txt, summary.json and GE Data Docs (data_docs/index.html); exits 1 naming every failed
expectation and the offending groups when a gate fails, 2 on bad configuration or input.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "run the Great Expectations data-quality gates on the manifest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (section `validate:`)")
    parser.add_argument("--manifest", default="artifacts/manifest.csv", help="manifest written by `eulernet ingest`")
    parser.add_argument("--out", default="artifacts/quality", help="folder for summary.txt/json and data_docs/")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from components.data.manifest import ManifestError
    from components.quality.gates import GateConfig, run_gates
    from components.config import ConfigError, load_section

    try:
        cfg = load_section(GateConfig, "validate", args.params)
        if not Path(args.manifest).is_file():
            raise ManifestError(f"{args.manifest} not found (run `eulernet ingest` first)")
        # Raw read, not read_manifest: schema problems must reach the gates and be reported, not raise here.
        df = pd.read_csv(args.manifest, dtype=str, keep_default_na=False)
        out = Path(args.out)
        report = run_gates(df, cfg, data_root=".", docs_dir=out / "data_docs")
    except (ConfigError, ManifestError, OSError) as exc:
        print(f"eulernet validate: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.txt").write_text(report.summary + "\n")
    (out / "summary.json").write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    print(report.summary)
    print(f"\nData Docs: {out / 'data_docs' / 'index.html'}")
    if not report.success:
        print(f"eulernet validate: {len(report.failures)} expectation(s) failed:", file=sys.stderr)
        for f in report.failures:
            print(f"  - {f}", file=sys.stderr)
        return 1
    return 0
