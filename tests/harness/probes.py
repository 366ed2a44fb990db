"""Probes for the training loop's ``epoch_start_hook``: what the workers actually run on.

    fit(cfg, ..., epoch_start_hook=record_device_to("/tmp/x/devices.jsonl"))

Like ``faults``, imported by name inside the Ray Train workers (a local cluster's workers have the driver's
working directory, the repository root, on their ``sys.path``).
"""
from __future__ import annotations

import json
from pathlib import Path

HOOK = "tests.harness.probes:record_device"


def record_device_to(path: str) -> dict:
    """The ``epoch_start_hook`` spec that appends each worker's device at the start of every epoch to ``path``."""
    return {"fn": HOOK, "kwargs": {"path": str(path)}}


def record_device(epoch: int, rank: int, path: str) -> None:
    """One JSON line: epoch, rank, the worker's torch device and, on CUDA, the GPU's name."""
    import ray.train.torch
    import torch

    device = ray.train.torch.get_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    with Path(path).open("a") as fh:
        fh.write(json.dumps({"epoch": epoch, "rank": rank, "device": str(device), "gpu": name}) + "\n")


def read_devices(path: str) -> list[dict]:
    p = Path(path)
    return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []
