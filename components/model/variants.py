"""The registered EulerNet variants (timm's "registered variants" section), without torch.

The paper's baseline, the Table I ablations C1-C5 and this repository's default are one-line entries here; the
network code (``eulernet.py``) builds them. Kept torch-free so configs (``TrainConfig``, ``InferenceConfig``) can
check a variant name or its label type without loading the network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FUSIONS: tuple[str, ...] = ("residual_pyramid", "concat")
LABEL_TYPES: tuple[str, ...] = ("location_map", "binary_mask", "depth_map")
DIIRF_INITIAL: tuple[str, ...] = ("steady", "zero")
TEST_WIDTH = 0.125  # tiny model for CPU tests (stem 8, blocks 16/24/16 channels)


@dataclass(frozen=True)
class Variant:
    """A named row of Table I: the architecture switches plus the label the row trains on."""

    name: str
    label_type: str
    fcam: bool
    fusion: str
    description: str = ""
    paper_acer_test: float | None = None  # Table I, test ACER (%) on the authors' dataset, for reference
    overrides: tuple[tuple[str, Any], ...] = ()  # further EulerNetConfig fields this variant sets

    def __post_init__(self):
        if self.label_type not in LABEL_TYPES:
            raise ValueError(f"Variant {self.name!r}: label_type must be one of {LABEL_TYPES}, got {self.label_type!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"Variant {self.name!r}: fusion must be one of {FUSIONS}, got {self.fusion!r}")


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("baseline", "location_map", True, "residual_pyramid", "the proposed method (all improvements)", 1.88),
        Variant("c1", "binary_mask", True, "residual_pyramid", "Compare 1: binary mask label", 2.84),
        Variant("c2", "depth_map", False, "concat", "Compare 2: depth map, no FCAM, no Residual Pyramid", 2.57),
        Variant("c3", "location_map", True, "concat", "Compare 3: Residual Pyramid -> concatenation", 2.26),
        Variant("c4", "location_map", False, "residual_pyramid", "Compare 4: no FCAM", 2.22),
        Variant("c5", "depth_map", True, "residual_pyramid", "Compare 5: depth map label", 2.06),
        # Not a Table I row: the paper's baseline plus the Eulerian input stage, this repository's default
        # because it wins on the held-out temporal benchmark (docs/training.md).
        Variant("eulernet", "location_map", True, "residual_pyramid",
                "baseline + Eulerian input stage (the repository default; docs/model.md)",
                overrides=(("euler_alpha", 20.0), ("diirf_initial", "steady"))),
    )
}
TABLE_I = ("baseline", "c1", "c2", "c3", "c4", "c5")


def variant_named(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown EulerNet variant {name!r}; known: {sorted(VARIANTS)}") from None


def variant_label_type(name: str) -> str:
    """Label map the named variant trains on: "location_map", "binary_mask" or "depth_map"."""
    return variant_named(name).label_type


__all__ = ["FUSIONS", "LABEL_TYPES", "DIIRF_INITIAL", "TEST_WIDTH", "Variant", "VARIANTS", "TABLE_I",
           "variant_named", "variant_label_type"]
