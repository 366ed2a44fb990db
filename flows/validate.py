"""`eulernet validate`: Great Expectations gates on artifacts/manifest.csv -> artifacts/quality/.

Writes summary.txt, summary.json and GE Data Docs (data_docs/index.html); exits 1 naming every failed
expectation and the offending groups when a gate fails, 2 on bad configuration or input.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from flows.args import manifest_option, params_option
from flows.errors import StageError

HELP = "run the Great Expectations data-quality gates on the manifest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    params_option(parser, "validate")
    manifest_option(parser)
    parser.add_argument("--out", default="artifacts/quality", help="folder for summary.txt/json and data_docs/")
    parser.add_argument("--headline", default="metrics/quality.json",
                        help="passed (1/0), videos and failed expectations: a small file tracked by git")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from components.config import ConfigError, load_section
    from components.data.digest import DEFAULT_CACHE, DigestTable
    from components.data.manifest import ManifestError
    from components.quality.gates import GateConfig, run_gates
    from components.runtime import header

    try:
        cfg = load_section(GateConfig, "validate", args.params)
        header("validate", f"Great Expectations gates on {args.manifest}"
                           f"{' (decoding every video)' if cfg.check_videos else ''} -> {args.out}")
        if not Path(args.manifest).is_file():
            raise ManifestError(f"{args.manifest} not found (run `eulernet ingest` first)")
        # Raw read, not read_manifest: schema problems must reach the gates and be reported, not raise here.
        df = pd.read_csv(args.manifest, dtype=str, keep_default_na=False)
        out = Path(args.out)
        digests = DigestTable.read(DEFAULT_CACHE)
        report = run_gates(df, cfg, data_root=".", docs_dir=out / "data_docs", digests=digests)
        digests.write(DEFAULT_CACHE)  # labeling keys its cache on the same sha256s: hash each video once
    except (ConfigError, ManifestError, OSError) as exc:
        raise StageError(exc) from None
    from components.files import write_json, write_text
    from components.quality.gates import manifest_digest

    write_text(out / "summary.txt", report.summary + "\n")
    # The verdict names the exact manifest it judged: label and train refuse data it does not cover.
    write_json(out / "summary.json", {**report.to_json(), "manifest_sha256": manifest_digest(args.manifest)})
    write_json(getattr(args, "headline", "metrics/quality.json"), {
        "passed": int(report.success), "videos": report.to_json()["n_videos"], "failed": len(report.failures)})
    # The console gets the verdict; the tables (devices, scenes, splits) are in summary.txt and the Data Docs.
    print(report.summary.splitlines()[0])
    print(f"details: {out / 'summary.txt'}, Data Docs: {out / 'data_docs' / 'index.html'}")
    if not report.success:
        raise StageError("\n  - ".join([f"{len(report.failures)} expectation(s) failed:", *report.failures]), code=1)
    return 0
