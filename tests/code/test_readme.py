"""README.md, executed as far as is cheap: every path it names exists (or a documented step makes it) and every
command it shows parses: `eulernet` and `dvc` command lines through their real argument parsers (nothing runs),
scripts through their own `--help` when the README gives them flags (each must be there; a script shown without
flags must exist and compile), `bin/` entry points exist and are executable.

Commands come from fenced code blocks and from inline code that starts with a command; paths from both too.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
BIN = Path(sys.executable).parent
COMMAND = re.compile(r"^(eulernet|python|dvc|mlflow|bin/\w+)(\s|$)")
# Paths that do not exist in a checkout until a documented step makes them, and the step.
PRODUCED = {
    "artifacts/.cache": "label/validate stages (machine-local caches)",
    "artifacts/ray_runs": "train stage (Ray Train runs)",
    "artifacts/ablation": "eulernet ablation (--out default)",
    "metrics": "validate/train/evaluate stages",
    "mlflow.db": "the first tracked run",
    "mlruns": "the first tracked run",
    "dvc_plots": "dvc plots show",
    "datasets": 'README "Your own videos" step 4 (dvc import-url)',
    ".venv": "bin/setup",
    ".dvc/tmp": "dvc exp run --queue / dvc queue start",
    "artifacts/monitor": "eulernet monitor (--out default)",
    "logs/requests": "eulernet serve (serve.request_log_dir: each replica's request log)",
}
# Placeholder words in usage lines (values, not flags or subcommands).
PLACEHOLDER = re.compile(r"^(<[^>]+>|[A-Z][A-Z_]*|\.\.\.)$")


def _fenced() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w*)\n(.*?)```", README, re.S)]


def _inline() -> list[str]:
    prose = re.sub(r"```.*?```", "", README, flags=re.S)
    return [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", prose)]


def _split(line: str) -> list[str]:
    """Shell-ish segments of one line: comments dropped, `;`/`&&` split, loop keywords removed."""
    line = re.sub(r"\s+#.*$", "", line.strip())
    out = []
    for part in re.split(r"\s*(?:;|&&)\s*", line):
        part = re.sub(r"^(do|then)\s+", "", part.strip())
        if part and not re.match(r"^(for|done|fi|while)\b", part):
            out.append(part)
    return out


def commands() -> list[str]:
    found = []
    for lang, body in _fenced():
        if lang in ("bash", "sh", ""):
            for line in body.splitlines():
                found += [c for c in _split(line) if COMMAND.match(c)]
    found += [s for s in _inline() if COMMAND.match(s)]
    # A bare program name in prose (`dvc`, `mlflow`) is not a command line; `eulernet` alone is (its --help).
    return sorted(c for c in set(found) if len(c.split()) > 1 or c == "eulernet" or c.startswith("bin/"))


def _argv(cmd: str) -> list[str]:
    """Tokens of a usage line: `[--a X | --b Y]` brackets and bars dropped (each flag is checked on its own)."""
    tokens = shlex.split(cmd.replace("[", " ").replace("]", " ").replace(" | ", " "))
    return [t for t in tokens if t != "|"]


def _flags(argv: list[str]) -> list[str]:
    return [t.split("=")[0] for t in argv if t.startswith("-") and t not in ("-", "--")]


# ------------------------------------------------------------------------------------------ eulernet
@cache
def _eulernet_parser(sub: str | None):
    from flows.cli import build_parser

    return build_parser(sub)


def _options(parser, sub: str | None) -> set[str]:
    import argparse

    opts = {o for a in parser._actions for o in a.option_strings}
    if sub:
        subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        opts |= {o for a in subs.choices[sub]._actions for o in a.option_strings}
    return opts


def check_eulernet(cmd: str) -> None:
    from flows.cli import COMMANDS

    argv = _argv(cmd)[1:]
    words = [t for t in argv if not t.startswith("-")]
    sub = words[0] if words else None
    if sub is not None and PLACEHOLDER.match(sub):  # `eulernet <stage> --help`: every stage
        for stage in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values():
            check_eulernet(cmd.replace(sub, stage["cmd"].split()[1], 1))
        return
    assert sub is None or sub in COMMANDS, f"{cmd!r}: no such command {sub!r} (known: {sorted(COMMANDS)})"
    parser = _eulernet_parser(sub)
    with pytest.raises(SystemExit) as ok:  # its --help works
        parser.parse_args(([sub] if sub else []) + ["--help"])
    assert ok.value.code == 0, cmd
    missing = [f for f in _flags(argv) if f not in _options(parser, sub)]
    assert not missing, f"{cmd!r}: unknown flag(s) {missing}"
    whole = sub and len(argv) > 1 and "[" not in cmd and not ({"-h", "--help"} & set(argv))
    if whole and not any(PLACEHOLDER.match(w) for w in words[1:]):
        parser.parse_args(argv)  # a whole command line (not a name in prose) parses as written


# ------------------------------------------------------------------------------------------ dvc
def check_dvc(cmd: str) -> None:
    import argparse

    from dvc.cli.parser import get_main_parser

    argv = [re.sub(r"^<[^>]+>$", "x", t) for t in _argv(cmd)[1:]]
    parser, used = get_main_parser(), 0
    for word in argv:  # down the subcommands (`exp`, `run`)
        subs = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if subs is None or word not in subs.choices:
            break
        parser, used = subs.choices[word], used + 1
    assert used and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions), \
        f"{cmd!r}: not a dvc command"
    options = {o for a in parser._actions for o in a.option_strings}
    missing = [f for f in _flags(argv) if f not in options]
    assert not missing, f"{cmd!r}: unknown flag(s) {missing}"
    if len(argv) > used:  # a whole command line (not just a command's name in prose): it parses as written
        get_main_parser().parse_args(argv)


# ------------------------------------------------------------------------------------------ scripts
@cache
def _help(argv: tuple[str, ...]) -> str:
    proc = subprocess.run(list(argv) + ["--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(argv)} --help failed:\n{proc.stderr[-2000:]}"
    return proc.stdout


def _head(cmd: str) -> tuple[str, ...]:
    argv = _argv(cmd)
    return (sys.executable, argv[1]) if argv[0] == "python" else (str(BIN / argv[0]), argv[1])


def check_script(cmd: str) -> None:
    argv = _argv(cmd)
    if argv[0] == "python":
        script = argv[1]
        assert (REPO / script).is_file(), f"{cmd!r}: {script} does not exist"
        if not _flags(argv):  # nothing to look up: it must compile (its --help may import a whole stack, ~12 s)
            compile((REPO / script).read_text(), script, "exec")
            return
    text = _help(_head(cmd))
    missing = [f for f in _flags(argv) if not re.search(rf"(^|[\s,\[]){re.escape(f)}\b", text)]
    assert not missing, f"{cmd!r}: flag(s) {missing} not in its --help"


def check(cmd: str) -> None:
    word = cmd.split()[0]
    if word == "eulernet":
        check_eulernet(cmd)
    elif word == "dvc":
        check_dvc(cmd)
    elif word.startswith("bin/"):
        path = REPO / word
        assert path.is_file() and path.stat().st_mode & 0o111, f"{word} is not an executable file"
        if len(cmd.split()) > 1:
            assert re.search(re.escape(cmd.split()[1]), path.read_text()), f"{cmd!r}: {word} has no such option"
    else:
        check_script(cmd)


def test_readme_commands_parse():
    cmds = commands()
    kinds = {c.split()[0] for c in cmds}
    assert {"eulernet", "dvc", "python", "bin/demo"} <= kinds, kinds  # the extraction itself works
    scripts = [c for c in cmds if c.split()[0] in ("python", "mlflow") and _flags(_argv(c))]
    with ThreadPoolExecutor(max_workers=2) as pool:  # their --help runs in subprocesses
        list(pool.map(lambda c: _help(_head(c)), scripts))
    failures = []
    for cmd in cmds:
        try:
            check(cmd)
        except (AssertionError, SystemExit) as exc:
            failures.append(f"{cmd}: {exc}")
    assert not failures, "README commands that do not parse:\n" + "\n".join(failures)


# ------------------------------------------------------------------------------------------ paths
def _dvc_outputs() -> set[str]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    outs = set()
    for stage in spec["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            outs |= {next(iter(o)) if isinstance(o, dict) else o for o in stage.get(kind, [])}
    return outs


def _sample_files() -> set[str]:
    """What `dvc pull data.dvc` puts under data/ (the listing stored in the in-repo remote)."""
    import json

    out = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]
    md5 = out["md5"].removesuffix(".dir")
    listing = json.loads((REPO / "dvc-storage/files/md5" / md5[:2] / f"{md5[2:]}.dir").read_text())
    return {f"{out['path']}/{e['relpath']}" for e in listing}


def paths() -> list[str]:
    top = {p.name for p in REPO.iterdir()} | {p.split("/")[0] for p in PRODUCED} | {"artifacts", "data"}
    found = set()
    texts = [body for lang, body in _fenced() if lang in ("bash", "sh", "")] + _inline()
    for text in texts:
        for token in re.split(r"[\s,()]+", text):
            token = token.split("::")[0].rstrip(".:;").removeprefix("video=@")
            if "/" in token and "://" not in token and not token.startswith(("-", "/", "$", "~")) \
                    and token.split("/")[0] in top and not re.search(r"[<>*$@]", token):
                found.add(token)
    return sorted(found)


def test_readme_paths_exist_or_are_made_by_a_documented_step():
    found = paths()
    assert {"artifacts/manifest.csv", "dvc-storage", "components/face/landmarks.py"} <= \
        {p.rstrip("/") for p in found}, found  # the extraction itself works
    outs, sample = _dvc_outputs(), _sample_files()
    missing = []
    for p in found:
        clean = p.rstrip("/")
        if (REPO / clean).exists() or clean in sample or any(s.startswith(clean + "/") for s in sample):
            continue
        if any(clean == o or clean.startswith(o + "/") or o.startswith(clean + "/") for o in outs):
            continue  # a stage output (or a folder of them): `dvc repro`
        if any(clean == k or clean.startswith(k + "/") for k in PRODUCED):
            continue
        missing.append(p)
    assert not missing, f"README names paths that nothing makes: {missing}"


def test_readme_test_references_name_real_tests():
    """`tests/...py::test_name` in the README: the file exists and defines that test."""
    refs = set(re.findall(r"(tests/[\w/]+\.py)::(\w+)", README))
    assert refs
    for path, name in refs:
        assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), f"{path}::{name} does not exist"


def test_quoted_sample_figures_equal_the_committed_metrics():
    """The sample's figures quoted in README and docs/training.md are the committed reference run's
    (`metrics/eval.json`), so a new reference run that changes them fails here until the docs follow."""
    ev = json.loads((REPO / "metrics" / "eval.json").read_text())
    quoted = re.findall(r"test AUC \(([\d.]+) in `metrics/eval.json`\)", README)
    assert quoted, "README no longer quotes the sample's test AUC with its source"
    assert all(float(q) == round(ev["test_auc"], 3) for q in quoted), (quoted, ev["test_auc"])
    training = (REPO / "docs" / "training.md").read_text()
    row = re.search(r"^\| AUC \| - \| ([\d.]+) \|$", training, re.M)
    assert row and float(row.group(1)) == round(ev["test_auc"], 3)
    acer = re.search(r"^\| ACER at the dev threshold \| ([\d.]+) % \| ([\d.]+) % ", training, re.M)
    assert acer and float(acer.group(1)) == round(100 * ev["dev_acer"], 1)
    assert float(acer.group(2)) == round(100 * ev["test_acer"], 1)
