"""`use_gpu: auto | true | false` (components/training/devices.py): the cases of issue 16, without a cluster."""
from __future__ import annotations

import json

import pytest

from components.training.devices import (
    DECISION_FILE,
    DeviceDecision,
    launcher_max_gpus,
    read_decision,
    resolve_use_gpu,
    write_decision,
)


@pytest.mark.parametrize("gpus_now,gpus_autoscaler,workers,use_gpu", [
    (0, 4, 2, True),      # shipped clusters: the GPU group scales from zero, so none exists at start
    (0, None, 2, False),  # a laptop / CI: no GPU, no autoscaler
    (0, 0, 1, False),     # an autoscaler with CPU groups only
    (1, None, 2, False),  # one GPU, two workers: the second could never be placed
    (1, 1, 2, False),
    (2, None, 2, True),
    (1, None, 1, True),
    (0, 1, 1, True),
    (8, 2, 4, True),      # GPUs present count even when the reported config says fewer
])
def test_auto_turns_gpus_on_only_with_one_per_worker(gpus_now, gpus_autoscaler, workers, use_gpu):
    d = resolve_use_gpu("auto", workers, gpus_now, gpus_autoscaler)
    assert (d.use_gpu, d.source) == (use_gpu, "auto")
    assert f"{gpus_now:g} GPU(s)" in d.reason  # the log says what it saw


def test_auto_explains_too_few_gpus():
    d = resolve_use_gpu("auto", 2, 1, None)
    assert "fewer than the 2 workers" in d.reason and "CPU" in d.reason


def test_resume_keeps_the_first_decision():
    # GPU nodes idled down since the run started: auto must not silently continue on CPU...
    d = resolve_use_gpu("auto", 2, 0, None, previous=True)
    assert (d.use_gpu, d.source) == (True, "resumed") and "earlier use_gpu=true" in d.reason
    # ...nor switch a CPU run to GPUs half-way.
    assert resolve_use_gpu("auto", 2, 4, 4, previous=False).use_gpu is False


def test_explicit_value_overrides_a_resumed_run():
    d = resolve_use_gpu(False, 2, 4, 4, previous=True)
    assert (d.use_gpu, d.source) == (False, "requested") and "overrides" in d.reason
    assert resolve_use_gpu(True, 2, 0, 4, previous=False).use_gpu is True


def test_true_with_known_too_few_gpus_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="needs 2 GPUs") as err:
        resolve_use_gpu(True, 2, 1, 1)
    assert "num_workers to 1" in str(err.value)
    with pytest.raises(ValueError, match="keeps that on resume"):
        resolve_use_gpu("auto", 4, 0, 2, previous=True)


def test_true_without_capacity_information_is_obeyed_and_says_it_waits():
    d = resolve_use_gpu(True, 2, 0, None)
    assert d.use_gpu is True and "wait" in d.reason


@pytest.mark.parametrize("requested", ["yes", None, 1.0])
def test_bad_requests(requested):
    with pytest.raises(ValueError, match="use_gpu"):
        resolve_use_gpu(requested, 1, 0, None)


def test_decision_round_trips_beside_the_run(tmp_path):
    run = str(tmp_path / "runs" / "r1")
    assert read_decision(run) is None
    write_decision(run, DeviceDecision(True, "auto", "why"))
    assert read_decision(run) is True
    assert json.loads((tmp_path / "runs" / "r1" / DECISION_FILE).read_text())["reason"] == "why"


def test_launcher_config_gpus():
    text = """
head_node_type: head
available_node_types:
  head: {resources: {CPU: 0, GPU: 0}}
  cpu: {max_workers: 8, resources: {CPU: 16}}
  gpu: {max_workers: 2, resources: {CPU: 4, GPU: 1}}
  gpu4: {max_workers: 1, resources: {GPU: 4}}
"""
    assert launcher_max_gpus(text) == 6
    assert launcher_max_gpus("available_node_types: {w: {max_workers: 2, resources: {}}}") is None


def test_driver_records_and_keeps_the_decision(tmp_path, monkeypatch):
    from components.training import devices
    from components.training.config import TrainConfig
    from components.training.driver import TrainingError, choose_device

    run = str(tmp_path / "run")
    monkeypatch.setattr(devices, "gpu_capacity", lambda: (0.0, 2.0))  # a GPU group scaled to zero
    first = choose_device(TrainConfig(num_workers=2, batch_size=4), run)
    assert (first.use_gpu, first.source) == (True, "auto")
    monkeypatch.setattr(devices, "gpu_capacity", lambda: (0.0, None))  # autoscaler config gone, no GPU up
    again = choose_device(TrainConfig(num_workers=2, batch_size=4), run)
    assert (again.use_gpu, again.source) == (True, "resumed")
    off = choose_device(TrainConfig(num_workers=2, batch_size=4, use_gpu=False), run)
    assert (off.use_gpu, off.source) == (False, "requested") and read_decision(run) is False
    monkeypatch.setattr(devices, "gpu_capacity", lambda: (1.0, 1.0))
    with pytest.raises(TrainingError, match="needs 2 GPUs"):
        choose_device(TrainConfig(num_workers=2, batch_size=4, use_gpu=True), str(tmp_path / "other"))


def test_no_capacity_source_means_a_local_cluster(monkeypatch, tmp_path):
    """No reported autoscaler config (Ray not even running here), no launcher bootstrap config, no env: None,
    so only the GPUs present count."""
    from components.training.devices import MAX_GPUS_ENV, _autoscaler_gpus

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(MAX_GPUS_ENV, raising=False)
    assert _autoscaler_gpus() is None
    monkeypatch.setenv(MAX_GPUS_ENV, "4")
    assert _autoscaler_gpus() == 4.0
    (tmp_path / "ray_bootstrap_config.yaml").write_text(
        "head_node_type: h\navailable_node_types:\n  h: {resources: {GPU: 0}}\n  g: {max_workers: 3, resources: {GPU: 2}}\n")
    assert _autoscaler_gpus() == 6.0  # the launcher's own config wins over the env hint
