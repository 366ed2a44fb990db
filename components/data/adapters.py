"""Dataset adapters: each turns one dataset layout into the manifest (docs/data.md, "Manifest").

Every adapter returns a checked manifest whose ``path`` column is ``root`` joined with the file's place in
the dataset: relative (to the current directory, normally the repository root) when ``root`` is relative,
absolute when ``root`` is absolute. Keeping the repository-relative form makes the ingest output, and thus
its DVC hash, the same on every machine.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from components.data.manifest import ATTACK_TYPES, COLUMNS, OS_VALUES, SPLITS, ManifestError, check_manifest

VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v")


@dataclass
class IngestConfig:
    """The ``data:`` section of params.yaml."""
    adapter: Literal["sample", "generic", "oulu"] = "sample"
    root: str = "data/sample"
    csv: str = ""  # generic: the CSV (absolute, or relative to root); default root/manifest.csv (or labels.csv)
    protocol: int = 1  # oulu: 1-4
    fold: int | None = None  # oulu: 1-6 for protocols 3 and 4
    # Video paths must resolve (symlinks followed) inside ``root``; true accepts absolute, ``..`` and symlinked
    # paths that leave it (e.g. a DVC cache of link type symlink). Off: a CSV cannot point ingest (and, with
    # EULERNET_STORAGE set, the upload to the shared bucket) at arbitrary files.
    allow_outside_root: bool = False

    def __post_init__(self):
        if self.adapter not in ("sample", "generic", "oulu"):
            raise ValueError(f"adapter must be sample, generic or oulu, got {self.adapter!r}")
        if not self.root:
            raise ValueError("root must name the dataset folder")
        if self.adapter == "oulu":
            _check_protocol(self.protocol, self.fold)


def _join(root: str | Path, rel: str) -> str:
    p = Path(rel)
    return p.as_posix() if p.is_absolute() else (Path(root) / p).as_posix()


def _outside_root(root: str | Path, path: str | Path) -> str | None:
    """Why ``path`` (as joined by :func:`_join`) leaves the dataset ``root`` once ``..`` and symlinks are resolved,
    or None when it stays inside."""
    real_root, real = Path(root).resolve(), Path(path).resolve()
    if real.is_relative_to(real_root):
        return None
    return (f"path {str(path)!r} resolves to {real}, outside the dataset root {real_root} (an absolute path, '..' "
            f"or a symlink leaving it); set data.allow_outside_root: true in params.yaml to accept such paths")


# ------------------------------------------------------------------------------------------------ sample
def from_sample(root: str | Path, allow_outside_root: bool = False) -> pd.DataFrame:
    """A dataset in manifest form already (the embedded sample, or `eulernet generate` output). Its paths must
    stay inside ``root`` unless ``allow_outside_root``."""
    from components.data.manifest import read_manifest

    path = Path(root) / "manifest.csv"
    if not path.is_file():
        raise ManifestError(f"{path} not found: a 'sample' dataset is a folder with manifest.csv and its videos "
                            f"(the embedded sample: `dvc pull data.dvc`; your own: `eulernet generate --out {root}`)")
    df = read_manifest(path)
    df["path"] = [_join(root, p) for p in df["path"]]
    if not allow_outside_root:
        outside = [f"line {i + 2}: {why}" for i, p in enumerate(df["path"]) if (why := _outside_root(root, p))]
        if outside:
            raise ManifestError(f"{path}: {len(outside)} path(s) outside the dataset root:\n  - "
                                + "\n  - ".join(outside[:20]))
    return df


# ----------------------------------------------------------------------------------------------- generic
GENERIC_REQUIRED = ("path", "subject_id", "device", "scene", "attack_type")
GENERIC_OPTIONAL = ("video_id", "os", "label", "split", "source", "meta")
# Spellings people use for the same classes; anything else is rejected rather than guessed.
_ATTACK_ALIASES = {
    "live": "live", "real": "live", "bonafide": "live", "bona_fide": "live", "bona-fide": "live",
    "genuine": "live", "print": "print", "photo": "print", "printed": "print", "paper": "print",
    "replay": "replay", "video": "replay", "screen": "replay", "display": "replay",
    "certificate": "certificate", "id_card": "certificate", "card": "certificate",
    "ai_dynamic": "ai_dynamic", "deepfake": "ai_dynamic", "ai": "ai_dynamic",
    "mask": "mask", "3d_mask": "mask", "other": "other",
}


def from_generic_csv(root: str | Path, csv_path: str | Path | None = None,
                     allow_outside_root: bool = False) -> pd.DataFrame:
    """A folder of videos plus a CSV describing them (columns documented in docs/data.md).

    Required: path (relative to ``root``; it must resolve inside ``root``, symlinks followed, unless
    ``allow_outside_root``), subject_id, device, scene, attack_type.
    Optional: video_id (default: the file name without suffix), os (android/ios/other; default other),
    label (1 live / 0 attack; when given it must agree with attack_type), split (train/dev/test; when the
    column is absent, subjects are assigned 3:1:1 in sorted order), source, meta.
    Every bad row is reported by its CSV line number (the header is line 1).
    """
    root = Path(root)
    if csv_path:
        # Relative to the dataset root, like the video paths inside it (an absolute path is taken as is).
        csv_path = Path(csv_path) if Path(csv_path).is_absolute() else root / csv_path
        if not csv_path.is_file():
            raise ManifestError(f"generic CSV {csv_path} not found (data.csv is resolved relative to data.root "
                                f"{root}, or give an absolute path)")
    else:
        # One file name across the project: `eulernet generate` writes manifest.csv; labels.csv is still read.
        found = [root / n for n in ("manifest.csv", "labels.csv") if (root / n).is_file()]
        if not found:
            raise ManifestError(f"no {root / 'manifest.csv'} (or labels.csv) found; set data.csv to the CSV "
                                "describing the videos (relative to data.root)")
        csv_path = found[0]
    raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    raw.columns = [c.strip() for c in raw.columns]
    missing = [c for c in GENERIC_REQUIRED if c not in raw.columns]
    if missing:
        raise ManifestError(f"{csv_path}: missing column(s) {missing}; required {list(GENERIC_REQUIRED)}, "
                            f"optional {list(GENERIC_OPTIONAL)}")
    unknown_cols = [c for c in raw.columns if c not in GENERIC_REQUIRED + GENERIC_OPTIONAL]
    problems: list[str] = []
    rows = []
    for i, r in enumerate(raw.to_dict("records")):
        line = i + 2
        at_raw = r["attack_type"].strip().lower()
        at = _ATTACK_ALIASES.get(at_raw)
        if at is None:
            problems.append(f"line {line}: unknown attack_type {r['attack_type']!r}; allowed {list(ATTACK_TYPES)} "
                            f"(or aliases {sorted(set(_ATTACK_ALIASES) - set(ATTACK_TYPES))})")
            continue
        label = int(at == "live")
        if r.get("label", "").strip() != "":
            if r["label"].strip() not in ("0", "1"):
                problems.append(f"line {line}: unknown label {r['label']!r}; 1 = live, 0 = attack")
                continue
            if int(r["label"]) != label:
                problems.append(f"line {line}: label {r['label']} contradicts attack_type {at!r}")
                continue
        os_ = r.get("os", "").strip().lower() or "other"
        if os_ not in OS_VALUES:
            problems.append(f"line {line}: unknown os {r['os']!r}; allowed {list(OS_VALUES)}")
            continue
        split = r.get("split", "").strip().lower()
        if "split" in raw.columns and split not in SPLITS:
            problems.append(f"line {line}: unknown split {r['split']!r}; allowed {list(SPLITS)}")
            continue
        for col in ("path", "subject_id", "device", "scene"):
            if not r[col].strip():
                problems.append(f"line {line}: {col} is empty")
        if r["path"].strip() and not allow_outside_root:
            why = _outside_root(root, _join(root, r["path"].strip()))
            if why:
                problems.append(f"line {line}: {why}")
                continue
        meta = r.get("meta", "")
        if unknown_cols:
            extra = {c: r[c] for c in unknown_cols if r[c] != ""}
            meta = json.dumps({"meta": meta, **extra}, sort_keys=True) if extra else meta
        rows.append({"video_id": r.get("video_id", "").strip() or Path(r["path"]).stem,
                     "path": _join(root, r["path"].strip()), "subject_id": r["subject_id"].strip(),
                     "device": r["device"].strip(), "os": os_, "scene": r["scene"].strip(), "attack_type": at,
                     "label": label, "split": split, "source": r.get("source", "") or f"generic:{csv_path.name}",
                     "meta": meta})
    if problems:
        raise ManifestError(f"{csv_path}: {len(problems)} bad row(s):\n  - " + "\n  - ".join(problems[:20]))
    df = pd.DataFrame(rows, columns=COLUMNS)
    if "split" not in raw.columns:
        from components.data.synthetic import subject_splits

        subjects = sorted(df["subject_id"].unique())
        assigned = dict(zip(subjects, subject_splits(len(subjects))))
        df["split"] = df["subject_id"].map(assigned)
    return check_manifest(df)


# ---------------------------------------------------------------------------------------------- OULU-NPU
# Phone and session numbering of the OULU-NPU release (Boulkenafet et al., FG 2017).
OULU_PHONES = {1: "samsung_galaxy_s6_edge", 2: "htc_desire_eye", 3: "meizu_x5", 4: "asus_zenfone_selfie",
               5: "sony_xperia_c5_ultra_dual", 6: "oppo_n3"}
OULU_SESSIONS = {1: "office", 2: "meeting_room", 3: "hall"}
OULU_ACCESS = {1: "live", 2: "print", 3: "print", 4: "replay", 5: "replay"}
_OULU_NAME = re.compile(r"^(\d)_(\d)_(\d{2})_(\d)$")
_SPLIT_FILES = {"train": "Train", "dev": "Dev", "test": "Test"}


def _check_protocol(protocol: int, fold: int | None) -> None:
    if protocol not in (1, 2, 3, 4):
        raise ValueError(f"OULU-NPU protocol must be 1, 2, 3 or 4, got {protocol}")
    if protocol in (3, 4) and (fold is None or not 1 <= fold <= 6):
        raise ValueError(f"OULU-NPU protocol {protocol} has six folds: fold must be 1..6, got {fold}")
    if protocol in (1, 2) and fold is not None:
        raise ValueError(f"OULU-NPU protocol {protocol} has no folds: leave fold empty (got {fold})")


def parse_oulu_name(name: str) -> dict:
    """``Phone_Session_User_File`` -> its fields plus device/scene/attack_type; ValueError when malformed."""
    m = _OULU_NAME.match(name)
    if not m:
        raise ValueError(f"{name!r} is not an OULU-NPU name Phone_Session_User_File (e.g. 1_1_01_1)")
    phone, session, user, access = (int(g) for g in m.groups())
    if phone not in OULU_PHONES or session not in OULU_SESSIONS or access not in OULU_ACCESS or user < 1:
        raise ValueError(f"{name!r}: phone 1-6, session 1-3, user >= 1, file 1-5 expected")
    return {"phone": phone, "session": session, "user": user, "access": access, "device": OULU_PHONES[phone],
            "scene": OULU_SESSIONS[session], "attack_type": OULU_ACCESS[access]}


def oulu_protocol_files(root: str | Path, protocol: int, fold: int | None = None) -> dict[str, Path]:
    _check_protocol(protocol, fold)
    base = Path(root) / "Protocols" / f"Protocol_{protocol}"
    suffix = f"_{fold}" if protocol in (3, 4) else ""
    return {split: base / f"{stem}{suffix}.txt" for split, stem in _SPLIT_FILES.items()}


def from_oulu_npu(root: str | Path, protocol: int, fold: int | None = None,
                  allow_outside_root: bool = False) -> pd.DataFrame:
    """OULU-NPU: videos anywhere under ``root`` (normally {Train,Dev,Test}_files/), splits from the protocol lists.

    Lines read ``+1,1_1_01_1`` (live) or ``-1,...`` / ``-2,...`` (attack; test lists use -1 print, -2 replay).
    The attack type comes from the file's access-type digit (1 live, 2-3 print, 4-5 replay) and must agree
    with the line's sign (and with -2 = replay where used). Phone -> device (all Android), session -> scene.
    A video symlinked from outside ``root`` is refused unless ``allow_outside_root``.
    """
    root = Path(root)
    files = oulu_protocol_files(root, protocol, fold)
    index: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in VIDEO_SUFFIXES and _OULU_NAME.match(p.stem):
            index.setdefault(p.stem, p)
    rows, problems, missing = [], [], []
    for split, listing in files.items():
        if not listing.is_file():
            raise ManifestError(f"OULU-NPU protocol file {listing} not found")
        for ln, line in enumerate(listing.read_text().splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            parts = [x.strip() for x in line.split(",")]
            where = f"{listing.name} line {ln}"
            if len(parts) != 2 or parts[0] not in ("+1", "1", "-1", "-2"):
                problems.append(f"{where}: expected '+1,<name>', '-1,<name>' or '-2,<name>', got {line!r}")
                continue
            code, name = parts
            try:
                info = parse_oulu_name(name)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            live = code in ("+1", "1")
            if live != (info["attack_type"] == "live"):
                problems.append(f"{where}: {code} contradicts access type {info['access']} ({info['attack_type']})")
                continue
            if code == "-2" and info["attack_type"] != "replay":
                problems.append(f"{where}: -2 marks replay but access type {info['access']} is {info['attack_type']}")
                continue
            if name not in index:
                missing.append(name)
                continue
            path = index[name]
            rel = path.relative_to(root).as_posix()
            why = None if allow_outside_root else _outside_root(root, path)
            if why:
                problems.append(f"{where}: {why}")
                continue
            meta = {"protocol": protocol, "fold": fold, "phone": info["phone"], "session": info["session"],
                    "user": info["user"], "access": info["access"], "code": code}
            rows.append({"video_id": name, "path": _join(root, rel), "subject_id": f"oulu_{info['user']:02d}",
                         "device": info["device"], "os": "android", "scene": info["scene"],
                         "attack_type": info["attack_type"], "label": int(live), "split": split,
                         "source": f"oulu-npu/P{protocol}" + (f"-{fold}" if fold else ""),
                         "meta": json.dumps(meta, sort_keys=True)})
    if missing:
        problems.append(f"{len(missing)} listed video(s) not found under {root}: {missing[:10]}")
    if problems:
        raise ManifestError("OULU-NPU: " + f"{len(problems)} problem(s):\n  - " + "\n  - ".join(problems[:20]))
    df = pd.DataFrame(rows, columns=COLUMNS)
    dup = df["video_id"][df["video_id"].duplicated()]
    if len(dup):
        raise ManifestError(f"OULU-NPU protocol {protocol} lists {sorted(set(dup))[:10]} in more than one split "
                            f"or twice")
    return check_manifest(df)


def load_dataset(cfg: IngestConfig) -> pd.DataFrame:
    """Dispatch on ``cfg.adapter``."""
    if cfg.adapter == "sample":
        return from_sample(cfg.root, cfg.allow_outside_root)
    if cfg.adapter == "generic":
        return from_generic_csv(cfg.root, cfg.csv or None, cfg.allow_outside_root)
    return from_oulu_npu(cfg.root, cfg.protocol, cfg.fold, cfg.allow_outside_root)
