"""EulerNet model, pure torch: DIIRF, FCAM, Residual Pyramid, Eulerian input, Table I variants, Ranger.

Checkpoints, preprocessing and scoring live in ``components.inference``.

Names resolve lazily so ``import components.model`` stays cheap (torch loads on first use).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "eulernet": (
        "DIIRF", "FCAM", "ResidualPyramid", "EulerNetConfig", "EulerNet", "Variant", "VARIANTS", "TABLE_I", "TEST_WIDTH",
        "LABEL_TYPES", "FUSIONS", "MAX_POLE_RADIUS", "create_model", "variant_config", "variant_label_type",
    ),
    "optim": ("Ranger", "ranger"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'components.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
