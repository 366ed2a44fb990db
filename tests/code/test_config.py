from dataclasses import dataclass, field
from typing import Literal

import pytest

from flows.config import ConfigError, build, load_section


@dataclass(frozen=True)
class Inner:
    size: int = 8


@dataclass(frozen=True)
class Example:
    name: str
    lr: float = 1e-4
    mode: Literal["eer", "min_acer"] = "eer"
    gpu: bool | None = None
    sizes: list[int] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self):
        if self.lr <= 0:
            raise ValueError("lr must be > 0")


def test_builds_nested_and_coerces_yaml_scientific_strings():
    cfg = build(Example, {"name": "a", "lr": "1e-3", "sizes": [1, 2], "inner": {"size": 4}})
    assert cfg.lr == pytest.approx(1e-3) and cfg.sizes == [1, 2] and cfg.inner.size == 4


@pytest.mark.parametrize(
    "values, message",
    [
        ({"name": "a", "lr_rate": 1}, "unknown key(s) ['lr_rate']"),
        ({"name": 3}, "name: expected a string"),
        ({"name": "a", "mode": "best"}, "not one of ['eer', 'min_acer']"),
        ({"name": "a", "sizes": [1, "x"]}, "sizes[1]: expected an integer"),
        ({"name": "a", "gpu": "yes"}, "gpu"),
        ({"name": "a", "inner": {"size": 2, "depth": 1}}, "inner: unknown key(s) ['depth']"),
        ({"name": "a", "lr": -1.0}, "lr must be > 0"),
        ({}, "name"),
    ],
)
def test_rejects_bad_values_naming_the_key(values, message):
    with pytest.raises(ConfigError) as err:
        build(Example, values, "train")
    assert message in str(err.value)


def test_load_section_reads_yaml_and_names_missing_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("train:\n  name: x\n  lr: 0.5\n")
    assert load_section(Example, "train", p).lr == 0.5
    with pytest.raises(ConfigError, match="no section 'serve'"):
        load_section(Example, "serve", p)
    with pytest.raises(ConfigError, match="not found"):
        load_section(Example, "train", tmp_path / "missing.yaml")


def test_repository_params_file_is_a_mapping_of_known_sections():
    from flows.config import read_params

    params = read_params("params.yaml")
    assert {"data", "validate", "label", "train", "evaluate", "register", "serve"} <= set(params)
