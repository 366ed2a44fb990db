"""dvc.yaml cannot drift from the code: every project module a stage's command imports (transitively, including
imports inside functions) must be covered by that stage's `deps`, or DVC would keep stale outputs after it changes."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("components", "flows")


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Every project module named by an import anywhere in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n.split(".")[0] in PACKAGES:
                # the module itself and every package on the way (their __init__ runs on import)
                parts = n.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found


def closure(start: str) -> set[Path]:
    todo, seen, files = [start], set(), set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = _module_file(mod)
        if path is None:
            continue  # an attribute imported from a module, not a module
        files.add(path.relative_to(ROOT))
        todo.extend(_imports(path, mod) - seen)
        if path.name == "__init__.py" and "import_module" in path.read_text():
            # A package that resolves its names lazily (PEP 562 __getattr__) may load any of its modules.
            todo.extend(f"{mod}.{f.stem}" for f in path.parent.glob("*.py") if f.name != "__init__.py")
    return files


def _covered(file: Path, deps: list[str]) -> bool:
    return any(file == Path(d) or Path(d) in file.parents for d in deps)


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(stage):
    spec = STAGES[stage]
    command = spec["cmd"].split()[1]  # `eulernet <command> ...`
    module = f"flows.{'register' if command in ('promote', 'rollback') else command}"
    deps = [str(d) for d in spec.get("deps", [])]
    needed = closure(module) | closure("flows.cli")
    missing = sorted(str(f) for f in needed if not _covered(f, deps))
    assert not missing, f"stage {stage!r} runs code dvc.yaml does not list as deps: {missing}"


def test_the_checker_sees_function_level_and_relative_imports():
    files = {str(f) for f in closure("flows.train")}
    assert "components/training/driver.py" in files  # imported inside run()
    assert "components/inference/tensors.py" in files  # relative import inside components.inference
    assert "components/runtime.py" in files


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_params_are_the_keys_that_change_its_outputs(stage):
    """A stage re-runs when a key it reads changes, and only then: every key of its section that is not marked
    speed-only on the config class is listed, by key, and nothing else (a speed-only key, e.g. label.concurrency,
    must not relabel)."""
    import dataclasses

    from components.config import section_class

    listed = [p for p in STAGES[stage].get("params", []) if isinstance(p, str)]
    sections = {p.split(".")[0] for p in listed}
    assert len(sections) == 1, f"stage {stage!r} reads one params section, lists {sorted(sections)}"
    section = sections.pop()
    cls = section_class(section)
    speed = getattr(cls, "SPEED_ONLY", frozenset())
    want = {f"{section}.{f.name}" for f in dataclasses.fields(cls) if f.name not in speed}
    if listed == [section]:  # the whole section: right only when no key of it is speed-only
        assert not speed, f"stage {stage!r} lists all of {section!r} although {sorted(speed)} only change speed"
        return
    assert set(listed) == want, (f"stage {stage!r}: missing {sorted(want - set(listed))}, "
                                 f"not output-changing {sorted(set(listed) - want)}")
