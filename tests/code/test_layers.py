"""The layer rules of docs/ARCHITECTURE.md as contracts (what import-linter would check): each package of
`components/` may import only the packages listed for it, `components/model` nothing of the project, and
nothing under `components/` imports `flows/`. A new upward import fails here, naming the file and the import."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# package -> what it may import ("pkg" = any module of it, "pkg.module" = that module only). Leaves first.
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "runtime": set(),
    "model": set(),  # pure torch
    "files": {"runtime"},
    "data": {"files", "runtime"},
    "quality": {"data", "files", "runtime"},
    "face": {"data", "files"},  # the face path: never labeling, serving or training
    "labeling": {"face", "data", "files", "runtime"},
    "inference": {"model", "face", "data", "files", "runtime"},
    "metrics": {"inference", "labeling.shards", "data", "files", "runtime"},
    # labeling.config: the LabelConfig the shards were cut with reaches the checkpoint (not the Ray pipeline).
    "training": {"model", "inference", "face", "labeling.shards", "labeling.config", "metrics", "files", "runtime"},
    "registry": {"inference", "face", "data", "labeling.shards", "files", "runtime", "config"},
    "serving": {"inference", "registry", "face", "data", "files", "runtime", "config"},
    "benchmark": {"data", "face", "labeling", "inference", "training", "metrics", "model", "files", "runtime"},
}


def _package(path: Path) -> str:
    rel = path.relative_to(ROOT / "components")
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path) -> set[tuple[int, str]]:
    """(line, module) of every import in the file: relative ones resolved, ``from pkg import mod`` as pkg.mod."""
    rel = path.relative_to(ROOT).with_suffix("")
    here = list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {(node.lineno, a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                out.add((node.lineno, f"{mod}.{a.name}" if _is_module(f"{mod}.{a.name}") else mod))
    return out


def _violations(path: Path) -> list[str]:
    pkg = _package(path)
    allowed = ALLOWED[pkg]
    bad = []
    for line, mod in sorted(_imports(path)):
        parts = mod.split(".")
        if parts[0] == "flows":
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod} (components never import flows)")
        if parts[0] != "components" or len(parts) < 2 or parts[1] == pkg:
            continue
        target = parts[1]
        if target in allowed or (len(parts) > 2 and f"{target}.{parts[2]}" in allowed):
            continue
        bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod} ({pkg} may import {sorted(allowed) or 'nothing'})")
    return bad


FILES = sorted((ROOT / "components").rglob("*.py"))


def test_every_package_has_a_rule():
    assert {_package(f) for f in FILES} <= set(ALLOWED) | {"__init__"}


def test_the_rules_have_no_cycle():
    graph = {p: {a.split(".")[0] for a in deps} for p, deps in ALLOWED.items()}
    done: set[str] = set()

    def visit(p, stack):
        assert p not in stack, f"layer cycle: {' -> '.join(stack + [p])}"
        if p not in done:
            for q in graph[p]:
                visit(q, stack + [p])
            done.add(p)

    for p in graph:
        visit(p, [])


@pytest.mark.parametrize("path", [f for f in FILES if _package(f) in ALLOWED], ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path):
    assert not _violations(path), "\n".join(_violations(path))


def test_the_checker_catches_an_upward_import():
    fake = ROOT / "components" / "model" / "_layer_probe.py"
    fake.write_text("from components.serving.app import build_app\nfrom ..inference import predictor\n")
    try:
        found = _violations(fake)
    finally:
        fake.unlink()
    assert len(found) == 2 and "components.serving.app" in found[0] and "components.inference.predictor" in found[1]
