import pytest

from components.data.clips import clip_indices, clip_span, clip_starts


def test_paper_clip_geometry():
    # 4 frames at interval 3 cover t, t+3, t+6, t+9: a span of 10 frames.
    assert clip_span(4, 3) == 10
    assert clip_indices(20, 4, 3) == [20, 23, 26, 29]


def test_non_overlapping_starts_fit_inside_the_video():
    starts = clip_starts(45, 4, 3)
    assert starts == [0, 10, 20, 30]
    for a, b in zip(starts, starts[1:]):
        assert b - a >= clip_span(4, 3)
    assert clip_indices(starts[-1])[-1] < 45


def test_too_short_video_has_no_clip_and_cap_spreads_clips():
    assert clip_starts(9, 4, 3) == []
    assert clip_starts(10, 4, 3) == [0]
    capped = clip_starts(100, 4, 3, max_clips=3)
    assert len(capped) == 3 and capped[0] == 0 and capped[-1] >= 50


def test_bad_geometry_is_rejected():
    with pytest.raises(ValueError):
        clip_starts(30, 0, 3)


def test_label_cache_key_changes_with_the_decode_and_crop_code(monkeypatch):
    """A change to the decode/crop/label code must relabel: the ledger key carries the code's hash."""
    from components.labeling import config as pipeline

    cfg = pipeline.LabelConfig()
    real = pipeline.labeling_code_version()
    assert len(real) == 16 and cfg.fingerprint() == cfg.fingerprint()
    before = pipeline.cache_key("a" * 64, cfg)
    monkeypatch.setattr(pipeline, "labeling_code_version", lambda: "0" * 16)
    assert pipeline.cache_key("a" * 64, cfg) != before


def test_the_label_cache_key_covers_every_module_that_shapes_a_label():
    """The face path, crops and maps are decided by the modules clip extraction imports from this project; each
    must be hashed into the cache key, or a change to it would keep serving stale labels from the cache."""
    import ast
    from pathlib import Path

    from components.labeling import config as pipeline

    root = Path(pipeline.__file__).resolve().parents[2]
    seen, todo = set(), ["components/face/clips.py", "components/labeling/maps.py"]
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        tree = ast.parse((root / rel).read_text())
        package = Path(rel).parent
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from .tracking import ...
                    base = package
                    for _ in range(node.level - 1):
                        base = base.parent
                    mods.append(base / (node.module or "").replace(".", "/"))
                elif (node.module or "").startswith("components."):
                    mods.append(Path(node.module.replace(".", "/")))
            elif isinstance(node, ast.Import):  # import components.data.video
                mods += [Path(a.name.replace(".", "/")) for a in node.names if a.name.startswith("components.")]
            todo += [f"{mod}.py" for mod in mods if (root / f"{mod}.py").is_file()]
    assert seen - set(pipeline.LABEL_CODE) == set(), sorted(seen - set(pipeline.LABEL_CODE))
    assert "components/face/tracking.py" in seen  # the walk does reach the face path
