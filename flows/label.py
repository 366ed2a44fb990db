"""Stage `label`: artifacts/manifest.csv -> landmarks, aligned face clips, label maps -> artifacts/shards/.

The output (index.csv, report.csv, label_config.json, gates.json and clips/*.parquet) is the same, byte for byte,
for the same manifest, config and labeling code; what was ever labeled stays in the cache folder (--cache,
default artifacts/.cache/labels), so a re-run labels only new videos. With EULERNET_STORAGE set the Parquet files
go to $EULERNET_STORAGE/shards/ (the index names them by URI).

Exit 0 when at least one clip was made (skipped videos are listed in artifacts/shards/report.csv),
1 when no clip at all was made, 2 on a configuration or manifest error.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from flows.args import manifest_option, params_option
from flows.errors import StageError

HELP = "landmarks -> face crops -> label maps, as Parquet shards (Ray Data)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    params_option(parser, "label")
    manifest_option(parser)
    parser.add_argument("--out", default="artifacts/shards", help="output folder (shards, index, report.csv)")
    parser.add_argument("--cache", default="artifacts/.cache/labels",
                        help="content-addressed labeling cache (ledger + every shard ever labeled), kept out of the "
                             "DVC output so the output is the same on every run; re-runs label only new videos "
                             "(a relative path is the repository's, also from a queued DVC experiment)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over the videos")
    parser.add_argument("--gates", default="artifacts/quality/summary.json",
                        help="the `eulernet validate` verdict the manifest must have passed")
    parser.add_argument("--skip-gates", action="store_true",
                        help="label data that has not passed validation (recorded beside the shards and in MLflow)")


def _resolve(df, manifest: Path, data_root: str | None):
    """Make paths absolute: relative to the manifest's folder (the manifest contract), else to the current
    directory (repo-relative), else to params `data.root`; a path found nowhere is kept and reported missing."""
    bases = [manifest.parent, Path.cwd()] + ([Path(data_root)] if data_root else [])
    out = []
    for p in df["path"]:
        cands = [Path(p)] if Path(p).is_absolute() else [b / p for b in bases]
        out.append(os.path.abspath(next((c for c in cands if c.is_file()), cands[0])))  # symlinks kept
    df = df.copy()
    df["path"] = out
    return df


def _cache_dir(cache: str | None) -> str | None:
    """A relative --cache is the project's: in a DVC experiment's temporary workspace (`dvc queue start`,
    `dvc exp run --temp`) that is the queuing repository's, so a queued experiment finds every video it has
    labeled (the cache is content-addressed: same video bytes, config and code, same clips) instead of relabeling."""
    if not cache or Path(cache).is_absolute():
        return cache
    from components.runtime import project_root

    return str(project_root() / cache)


def run(args: argparse.Namespace) -> int:
    from components.config import ConfigError, load_section, read_params
    from components.data.manifest import ManifestError, read_manifest
    from components.labeling.config import LabelConfig
    from components.labeling.pipeline import label_videos

    try:
        params = read_params(args.params)
        cfg = load_section(LabelConfig, "label", params)
        manifest = Path(args.manifest)
        if not manifest.is_file():
            raise ManifestError(f"{manifest} not found: run `eulernet ingest` first")
        df = _resolve(read_manifest(manifest), manifest, (params.get("data") or {}).get("root"))
    except (ConfigError, ManifestError) as exc:
        raise StageError(exc) from None
    try:
        # Load the backend once here: a missing model fails with one clear line instead of inside every actor,
        # and face-alignment's first-use download lands in the local cache before the actors look for it.
        from components.face.landmarks import make_backend

        make_backend(cfg.backend, **cfg.backend_options)
    except Exception as exc:  # ImportError, missing weights, bad backend_options (TypeError)
        raise StageError(f"cannot load landmark backend {cfg.backend!r}: {type(exc).__name__}: {exc}") from None

    from components.data.digest import DEFAULT_CACHE, DigestTable
    from components.quality.gates import GateError, require_passed, write_gate_record
    from components.runtime import header, init_ray, shared_storage

    if not getattr(args, "skip_gates", False):
        try:
            require_passed(args.gates, args.manifest)
        except GateError as exc:
            raise StageError(exc) from None

    # With shared storage (e.g. s3://bucket/prefix) shards go where every node can read them; else in --out.
    storage = shared_storage()
    header("label", f"{len(df)} videos -> {storage + '/shards' if storage else args.out} "
                    f"({cfg.backend}, {cfg.concurrency} actor{'s' if cfg.concurrency != 1 else ''})")
    init_ray()
    digests = DigestTable.read(DEFAULT_CACHE)  # the sha256s `eulernet validate` already computed
    report = label_videos(df, args.out, cfg, progress=not args.no_progress, storage=storage, digest_table=digests,
                          cache_dir=_cache_dir(getattr(args, "cache", None)))
    digests.write(DEFAULT_CACHE)
    write_gate_record(args.out, args.manifest, passed=not getattr(args, "skip_gates", False))
    print(report.summary())
    print(f"report: {Path(args.out) / 'report.csv'}")
    if report.n_clips == 0:
        raise StageError("no clip was made from any video; see the report for the reasons", code=1)
    return 0
