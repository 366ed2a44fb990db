"""Data-quality gates on a manifest, as one Great Expectations 1.x suite.

Per-video facts that a table expectation cannot see (is the file readable, how many frames, what is its
content hash, is its subject in two splits) are first computed into derived columns; the suite then expects on
those columns like on any other, so every gate shows up in the GE result and its Data Docs.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from components.data.digest import DigestTable
from components.data.manifest import ATTACK_TYPES, OS_VALUES, REQUIRED, SPLITS

SUITE_NAME = "manifest_gates"
# The run time the Data Docs show. Great Expectations stamps its reports with wall-clock times and random ids;
# they are replaced by these so the docs are a function of the data alone (a reproducible DVC output).
DOCS_RUN_TIME = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_GE_TIMES = re.compile(r"\b\d{8}T\d{6}\.\d{6}Z|\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?"
                       r"|\b\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC")
_GE_SORT_TIME = re.compile(r"('_run_time_sort': )[0-9.]+")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _counter(ids: dict[str, str]):
    return lambda m: ids.setdefault(m.group(0), f"id{len(ids):04d}")


def normalise_data_docs(docs_dir: str | Path) -> None:
    """Rewrite the Data Docs HTML under ``docs_dir`` so that two validations of the same data give the same bytes:
    every timestamp becomes :data:`DOCS_RUN_TIME` (in the format found) and every random (v4) UUID a counter in
    order of appearance (they only tie collapsible blocks to their buttons)."""
    fixed = {"compact": DOCS_RUN_TIME.strftime("%Y%m%dT%H%M%S.%fZ"),
             "iso": DOCS_RUN_TIME.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "text": DOCS_RUN_TIME.strftime("%Y-%m-%d %H:%M:%S UTC")}

    def when(m: re.Match) -> str:
        v = m.group(0)
        return fixed["text"] if v.endswith("UTC") else fixed["compact"] if "-" not in v else fixed["iso"]

    for page in sorted(Path(docs_dir).rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        new = _UUID.sub(_counter({}), text)
        new = _GE_SORT_TIME.sub(lambda m: m.group(1) + str(DOCS_RUN_TIME.timestamp()), _GE_TIMES.sub(when, new))
        if new != text:
            page.write_text(new, encoding="utf-8")


@dataclass
class GateConfig:
    """The ``validate:`` section of params.yaml: thresholds of the gates."""
    devices: list[str] = field(default_factory=list)  # expected devices; empty = the ones present
    scenes: list[str] = field(default_factory=list)  # expected scenes; empty = the ones present
    attack_types: list[str] = field(default_factory=lambda: list(ATTACK_TYPES))  # allowed values
    device_share: list[float] = field(default_factory=lambda: [0.05, 0.6])  # [min, max] fraction of videos
    scene_share: list[float] = field(default_factory=lambda: [0.05, 0.8])
    live_ratio: list[float] = field(default_factory=lambda: [0.2, 0.8])  # per device and per scene
    min_per_cell: int = 2  # videos per (device, scene, label)
    min_frames: int = 10  # one clip: 4 frames at interval 3 spans 10
    require_splits: list[str] = field(default_factory=lambda: list(SPLITS))  # each must hold >= 1 video
    check_videos: bool = True  # decode and hash every video (off: manifest-only gates)

    def __post_init__(self):
        for name in ("device_share", "scene_share", "live_ratio"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] <= lo_hi[1] <= 1.0:
                raise ValueError(f"{name} must be [min, max] with 0 <= min <= max <= 1, got {lo_hi}")
        bad = [a for a in self.attack_types if a not in ATTACK_TYPES]
        if bad:
            raise ValueError(f"attack_types {bad} are not manifest attack types {list(ATTACK_TYPES)}")
        bad = [s for s in self.require_splits if s not in SPLITS]
        if bad:
            raise ValueError(f"require_splits {bad} are not splits {list(SPLITS)}")
        if self.min_per_cell < 0 or self.min_frames < 1:
            raise ValueError(f"min_per_cell must be >= 0 and min_frames >= 1, got {self.min_per_cell}, "
                             f"{self.min_frames}")


@dataclass
class GateReport:
    success: bool
    failures: list[str]  # one line per failed expectation, naming it and the offending groups
    summary: str
    results: list[dict]  # every expectation: gate, expectation, group, success, observed
    table: pd.DataFrame | None = None  # the manifest with derived columns that was validated

    def to_json(self) -> dict:
        return {"success": self.success, "failures": self.failures, "results": self.results,
                "n_videos": 0 if self.table is None else int(len(self.table))}


# --------------------------------------------------------------------------------------- derived columns
def _probe(path: Path, min_frames: int, digests: DigestTable) -> tuple[str, int, str]:
    """(status, frames decoded up to min_frames, sha256 of the file) of one video."""
    from components.data.video import VideoError, read_frames

    if not path.is_file():
        return "missing", 0, ""
    sha = digests.digest(path)
    try:
        n = len(read_frames(path, max_frames=min_frames, max_side=64))
    except VideoError as exc:
        return exc.reason, 0, sha
    return ("ok" if n >= min_frames else "too_short"), n, sha


def derive_columns(df: pd.DataFrame, cfg: GateConfig, data_root: str | Path = ".",
                   digests: DigestTable | None = None) -> pd.DataFrame:
    """Add the per-video columns the suite expects on: cell, subject_leak, and (check_videos) status/frames/sha256.

    ``digests`` collects each file's sha256 (labeling reuses them instead of hashing every video again)."""
    t = df.copy()
    # Missing columns stay missing so the schema gate reports them; blank cells count as null.
    for col in REQUIRED:
        if col in t.columns and col != "label":
            t[col] = t[col].astype(object).map(lambda v: None if isinstance(v, str) and v.strip() == "" else v)
    if "label" in t.columns:
        t["label"] = pd.to_numeric(t["label"], errors="coerce")
    if {"device", "scene", "label"} <= set(t.columns):
        t["cell"] = (t["device"].astype(str) + "|" + t["scene"].astype(str) + "|"
                     + t["label"].astype("Int64").astype(str))
    if {"subject_id", "split"} <= set(t.columns):
        splits_of = t.groupby("subject_id")["split"].agg(lambda s: "+".join(sorted(set(map(str, s)))))
        t["subject_leak"] = [f"{s} in {splits_of[s]}" if s in splits_of and "+" in splits_of[s] else ""
                             for s in t["subject_id"]]
    if "path" not in t.columns:
        return t
    if cfg.check_videos:
        root = Path(data_root)
        digests = digests if digests is not None else DigestTable()
        probes = [_probe(Path(p) if Path(p).is_absolute() else root / p, cfg.min_frames, digests) for p in t["path"]]
        t["video_status"] = [p[0] for p in probes]
        t["frames_read"] = [p[1] for p in probes]
        t["sha256"] = [p[2] or f"<unhashed:{i}>" for i, p in enumerate(probes)]
    return t


# ----------------------------------------------------------------------------------------------- suite
def _bounds(n: int, lo_hi: list[float]) -> tuple[int, int]:
    # Shares become row-count bounds so GE reports the observed count; rounding keeps exact shares inside.
    return math.ceil(lo_hi[0] * n - 1e-9), math.floor(lo_hi[1] * n + 1e-9)


def build_expectations(t: pd.DataFrame, cfg: GateConfig) -> tuple[list, list[str]]:
    """The suite's expectations for table ``t`` (after derive_columns); each carries meta gate/group."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    n = len(t)
    missing = [c for c in REQUIRED if c not in t.columns]
    if missing:
        # Without the schema nothing else can be evaluated meaningfully: report the schema gate alone.
        return [gxe.ExpectTableColumnsToMatchSet(column_set=list(REQUIRED), exact_match=False,
                                                 meta={"gate": "schema", "group": "columns"})], []
    devices = cfg.devices or sorted(t["device"].dropna().astype(str).unique())
    scenes = cfg.scenes or sorted(t["scene"].dropna().astype(str).unique())
    ids = ["video_id"]

    def m(gate: str, group: str = "", **extra) -> dict:
        return {"gate": gate, "group": group, **extra}

    ex = [gxe.ExpectTableColumnsToMatchSet(column_set=list(REQUIRED), exact_match=False, meta=m("schema"))]
    ex += [gxe.ExpectColumnValuesToNotBeNull(column=c, meta=m("schema", c)) for c in REQUIRED]
    ex += [gxe.ExpectColumnValuesToBeUnique(column="video_id", meta=m("schema", "video_id"))]
    ex += [
        gxe.ExpectColumnValuesToBeInSet(column="attack_type", value_set=list(cfg.attack_types),
                                        meta=m("allowed values", "attack_type")),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS), meta=m("allowed values", "split")),
        gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1], meta=m("allowed values", "label")),
        gxe.ExpectColumnValuesToBeInSet(column="os", value_set=list(OS_VALUES), meta=m("allowed values", "os")),
    ]
    if cfg.devices:
        ex.append(gxe.ExpectColumnValuesToBeInSet(column="device", value_set=list(cfg.devices),
                                                  meta=m("allowed values", "device")))
    if cfg.scenes:
        ex.append(gxe.ExpectColumnValuesToBeInSet(column="scene", value_set=list(cfg.scenes),
                                                  meta=m("allowed values", "scene")))
    for s in cfg.require_splits:
        ex.append(gxe.ExpectTableRowCountToBeBetween(min_value=1, row_condition=Column("split") == s,
                                                     meta=m("split present", f"split={s}")))
    for col, values, share in (("device", devices, cfg.device_share), ("scene", scenes, cfg.scene_share)):
        lo, hi = _bounds(n, share)
        for v in values:
            ex.append(gxe.ExpectTableRowCountToBeBetween(
                min_value=lo, max_value=hi, row_condition=Column(col) == v,
                meta=m(f"{col} share", f"{col}={v}", bounds=list(share), n=n)))
        for v in values:
            ex.append(gxe.ExpectColumnMeanToBeBetween(
                column="label", min_value=cfg.live_ratio[0], max_value=cfg.live_ratio[1],
                row_condition=Column(col) == v, meta=m(f"live ratio per {col}", f"{col}={v}",
                                                       bounds=list(cfg.live_ratio))))
    for d in devices:
        for s in scenes:
            for lab in (1, 0):
                ex.append(gxe.ExpectTableRowCountToBeBetween(
                    min_value=cfg.min_per_cell, row_condition=Column("cell") == f"{d}|{s}|{lab}",
                    meta=m("min videos per cell", f"device={d}, scene={s}, label={'live' if lab else 'attack'}")))
    ex.append(gxe.ExpectColumnValuesToBeInSet(column="subject_leak", value_set=[""],
                                              meta=m("subject in one split", "subject_id")))
    if "video_status" in t.columns:
        ex += [
            gxe.ExpectColumnValuesToBeInSet(column="video_status", value_set=["ok"],
                                            meta=m("video readable with enough frames", "video_id")),
            gxe.ExpectColumnValuesToBeBetween(column="frames_read", min_value=cfg.min_frames,
                                              meta=m("video readable with enough frames", "video_id")),
            gxe.ExpectColumnValuesToBeUnique(column="sha256", meta=m("duplicate content", "video_id")),
        ]
    return ex, ids


def _describe_failure(r) -> str:
    cfg = r.expectation_config
    meta = cfg.meta or {}
    res = r.result or {}
    gate, group = meta.get("gate", cfg.type), meta.get("group", "")
    head = f"{gate} [{cfg.type}]"
    if r.exception_info and r.exception_info.get("raised_exception"):
        return f"{head} {group}: error {r.exception_info.get('exception_message')}"
    if "unexpected_index_list" in res and res.get("unexpected_index_list"):
        col = cfg.kwargs.get("column")
        items = []
        for row in res["unexpected_index_list"][:20]:
            vid = next((row[k] for k in ("video_id", "request_id") if k in row), None) if isinstance(row, dict) \
                else row
            val = row.get(col) if isinstance(row, dict) else None
            if val is None or (isinstance(val, float) and math.isnan(val)):
                val = "<empty>"
            items.append(f"{vid} ({col}={val})" if col not in ("video_id", "request_id") else str(vid))
        if col == "subject_leak":
            items = sorted({str(row.get(col)) for row in res["unexpected_index_list"] if isinstance(row, dict)})
        more = res.get("unexpected_count", len(items)) - len(res["unexpected_index_list"][:20])
        return f"{head}: {', '.join(items)}" + (f" (+{more} more)" if more > 0 else "")
    if "missing" in str(res.get("details", "")):
        return f"{head}: missing columns {res['details'].get('mismatched', {}).get('missing')}"
    if cfg.type == "expect_column_values_to_be_null" or cfg.type == "expect_column_values_to_not_be_null":
        return f"{head} {group}: {res.get('unexpected_count')} empty value(s)"
    observed = res.get("observed_value")
    if gate.endswith("share") and observed is not None:
        n = meta.get("n") or 1
        lo, hi = meta.get("bounds", [0, 1])
        return f"{head} {group}: {observed} of {n} videos ({observed / n:.0%}), allowed {lo:.0%}..{hi:.0%}"
    if gate.startswith("live ratio"):
        lo, hi = meta.get("bounds", [0, 1])
        obs = "no videos" if observed is None else f"{observed:.2f}"
        return f"{head} {group}: live ratio {obs}, allowed {lo:.2f}..{hi:.2f}"
    if cfg.type == "expect_table_row_count_to_be_between":
        return f"{head} {group}: {observed} videos, need >= {cfg.kwargs.get('min_value')}"
    unexpected = res.get("partial_unexpected_list")
    return f"{head} {group}: observed {observed if unexpected is None else unexpected}"


def run_suite(t: pd.DataFrame, expectations: list, ids: list[str], name: str, docs_dir: str | Path | None = None,
              source: str = "manifest", asset: str = "videos") -> tuple[bool, list[dict], list[str]]:
    """Validate table ``t`` against ``expectations`` (each with meta gate/group) as one Great Expectations suite
    ``name`` over data asset ``source``/``asset`` (the names the Data Docs show); build its Data Docs into
    ``docs_dir`` if given. Returns (success, every result, failure lines).
    The one GE road of the project: the manifest gates and request monitoring both validate through it."""
    import logging

    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    batch = ctx.data_sources.add_pandas(source).add_dataframe_asset(asset).add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(gx.ExpectationSuite(name=name))
    for e in expectations:
        suite.add_expectation(e)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"{source}_validation", data=batch, suite=suite))
    actions = []
    if docs_dir is not None:
        docs_dir = Path(docs_dir).resolve()
        docs_dir.mkdir(parents=True, exist_ok=True)
        ctx.add_data_docs_site(site_name="quality", site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}})
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["quality"]))
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(
        name=name, validation_definitions=[vd], actions=actions,
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ids}))
    # A fixed run id (and below, fixed times and ids in the HTML): the Data Docs are a DVC output, the same for
    # the same table; when validation ran is the caller's log's business, not the report's.
    cp_result = checkpoint.run(batch_parameters={"dataframe": t},
                               run_id=RunIdentifier(run_name=name, run_time=DOCS_RUN_TIME))
    if docs_dir is not None:
        normalise_data_docs(docs_dir)
    suite_result = next(iter(cp_result.run_results.values()))
    results, failures = [], []
    for r in suite_result.results:
        meta = r.expectation_config.meta or {}
        observed = (r.result or {}).get("observed_value", (r.result or {}).get("unexpected_count"))
        results.append({"gate": meta.get("gate", ""), "group": meta.get("group", ""),
                        "expectation": r.expectation_config.type, "success": bool(r.success),
                        "observed": observed if isinstance(observed, (int, float, str, type(None)))
                        else json.loads(json.dumps(observed, default=str))})
        if not r.success:
            failures.append(_describe_failure(r))
    return bool(suite_result.success), results, failures


def run_gates(df: pd.DataFrame, cfg: GateConfig, data_root: str | Path = ".",
              docs_dir: str | Path | None = None, digests: DigestTable | None = None) -> GateReport:
    """Validate manifest ``df`` (paths relative to ``data_root``); build GE Data Docs into ``docs_dir`` if given."""
    t = derive_columns(df, cfg, data_root, digests)
    expectations, ids = build_expectations(t, cfg)
    success, results, failures = run_suite(t, expectations, ids, SUITE_NAME, docs_dir)
    summary = summarize(t, results, failures)
    return GateReport(success=success, failures=failures, summary=summary, results=results, table=t)


def summarize(t: pd.DataFrame, results: list[dict], failures: list[str]) -> str:
    n = len(t)
    subjects = t["subject_id"].nunique() if "subject_id" in t.columns else "?"
    lines = [f"{'PASSED' if not failures else 'FAILED'}: {sum(r['success'] for r in results)}/{len(results)} "
             f"expectations met on {n} videos, {subjects} subjects", ""]
    if any(c not in t.columns for c in REQUIRED):
        return "\n".join(lines + ["Failed expectations:"] + [f"  - {f}" for f in failures])
    for col in ("device", "scene"):
        g = t.groupby(col).agg(videos=("video_id", "count"), live_ratio=("label", "mean"))
        g["share"] = g["videos"] / max(n, 1)
        lines += [g.round(3).to_string(), ""]
    lines += [t.pivot_table(index="split", columns="attack_type", values="video_id", aggfunc="count",
                            fill_value=0).to_string(), ""]
    if failures:
        lines += ["Failed expectations:"] + [f"  - {f}" for f in failures]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ gates where data is used
GATES_FILE = "gates.json"  # beside the shards: which manifest they were cut from and whether it passed the gates


class GateError(RuntimeError):
    """Data is about to be consumed without a passing data-quality verdict for exactly that data."""


def manifest_digest(manifest_path: str | Path) -> str:
    from components.data.digest import sha256_file

    return sha256_file(manifest_path)


def require_passed(summary_path: str | Path, manifest_path: str | Path) -> str:
    """The manifest's sha256 when ``summary_path`` (written by `eulernet validate`) is a PASSED verdict on
    exactly this manifest; otherwise a GateError that says which of the three it is and what to run."""
    summary_path, manifest_path = Path(summary_path), Path(manifest_path)
    if not summary_path.is_file():
        raise GateError(f"no data-quality verdict at {summary_path}: run `eulernet validate` first "
                        "(or pass --skip-gates, which is recorded)")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as exc:
        raise GateError(f"{summary_path} is not a validate summary: {exc}") from None
    digest = manifest_digest(manifest_path)
    if summary.get("manifest_sha256") != digest:
        raise GateError(f"{summary_path} is a verdict on another manifest than {manifest_path} "
                        "(it changed since `eulernet validate` ran): validate again")
    if not summary.get("success"):
        failures = summary.get("failures") or []
        raise GateError(f"the data-quality gates FAILED for {manifest_path} ({len(failures)} expectation(s), see "
                        f"{summary_path.with_suffix('.txt')}); fix the data or pass --skip-gates")
    return digest


def write_gate_record(shards_dir: str | Path, manifest_path: str | Path, passed: bool) -> Path:
    """Record beside the shards which manifest they came from and whether the gates were checked or skipped."""
    from components.files import write_json

    shown = os.path.abspath(manifest_path)  # repository-relative when inside it: the record is a DVC output
    if Path(shown).is_relative_to(os.getcwd()):
        shown = os.path.relpath(shown)
    return write_json(Path(shards_dir) / GATES_FILE, {
        "manifest": shown, "manifest_sha256": manifest_digest(manifest_path),
        "gates": "passed" if passed else "skipped"})


def require_shards_passed(shards_dir: str | Path, summary_path: str | Path) -> str:
    """Training's check: the shards were cut from a manifest that passed the gates, and the verdict still
    stands (validate was not re-run since with a failure). Returns the manifest sha256."""
    record_path = Path(shards_dir) / GATES_FILE
    if not record_path.is_file():
        raise GateError(f"{shards_dir} has no {GATES_FILE}: it was not made by `eulernet label` from validated "
                        "data (relabel, or pass --skip-gates)")
    record = json.loads(record_path.read_text())
    if record.get("gates") != "passed":
        raise GateError(f"{shards_dir} was labeled with --skip-gates: the data never passed the gates "
                        "(validate and relabel, or pass --skip-gates here too)")
    digest = require_passed(summary_path, record["manifest"])
    if digest != record.get("manifest_sha256"):
        raise GateError(f"{record['manifest']} changed after {shards_dir} was labeled: relabel")
    return digest
