"""GPU replicas without a GPU: `device: cuda` reserves GPUs on the replica, and a replica without a usable GPU
stops at start with a message that says what to change. No Ray Serve instance is started here."""
from __future__ import annotations

import pytest

from components.serving.config import ServeConfig, check_device


def _actor_options(app) -> dict:
    return dict(app._bound_deployment.ray_actor_options)


@pytest.mark.parametrize("device,num_gpus,gpus", [
    ("cpu", None, 0.0), ("cpu", 0, 0.0), ("cuda", None, 1.0), ("cuda", 0.5, 0.5), ("cuda:0", 0.25, 0.25),
    ("cuda", 2, 2.0),
])
def test_gpus_per_replica_follow_the_device(device, num_gpus, gpus):
    assert ServeConfig(device=device, num_gpus=num_gpus).gpus == gpus


@pytest.mark.parametrize("device,num_gpus,message", [
    ("cuda", 0, "needs num_gpus > 0"),
    ("cpu", 1, "never uses"),
    ("cuda", 1.5, "whole number"),
    ("cuda", -1, "must be >= 0"),
])
def test_inconsistent_gpu_settings_are_rejected(device, num_gpus, message):
    with pytest.raises(ValueError, match=message):
        ServeConfig(device=device, num_gpus=num_gpus)


def test_build_app_reserves_the_gpus_of_a_cuda_replica(tmp_path):
    from components.serving.app import build_app

    ckpt = str(tmp_path / "checkpoint.pt")  # only bound as an argument, never loaded here
    opts = _actor_options(build_app(config=ServeConfig(device="cuda"), checkpoint=ckpt))
    assert opts == {"num_cpus": 1, "num_gpus": 1.0}
    half = build_app(config=ServeConfig(device="cuda", num_gpus=0.5), checkpoint=ckpt,
                     deployment_options={"ray_actor_options": {"num_cpus": 2, "memory": 2 ** 31}})
    assert _actor_options(half) == {"num_cpus": 2, "memory": 2 ** 31, "num_gpus": 0.5}
    cpu = _actor_options(build_app(config=ServeConfig(), checkpoint=ckpt))
    assert cpu == {"num_cpus": 1} and "num_gpus" not in cpu
    with pytest.raises(ValueError, match="asks for 1"):
        build_app(config=ServeConfig(device="cuda"), checkpoint=ckpt,
                  deployment_options={"ray_actor_options": {"num_gpus": 2}})


def test_serve_config_file_args_reach_the_replica_options(tmp_path):
    """The path of a Serve config file (RayService): app_builder(args) with the GPU variant's args."""
    from components.serving.app import app_builder

    app = app_builder({"model_name": "eulernet", "device": "cuda", "num_gpus": 0.5,
                       "checkpoint": str(tmp_path / "checkpoint.pt")})
    assert _actor_options(app)["num_gpus"] == 0.5


def test_cuda_replica_without_cuda_fails_with_a_clear_message():
    with pytest.raises(RuntimeError) as err:
        check_device("cuda", cuda_available=False, device_count=0, gpu_ids=None, torch_cuda=None)
    msg = str(err.value)
    assert "CUDA is not available in this replica" in msg and "a CPU-only build" in msg
    assert "serve.device: cpu" in msg and "num_gpus" in msg


def test_cuda_replica_given_no_gpu_by_ray_fails():
    # Ray 2.60 shows every GPU to an actor that reserved none: CUDA works, but the replica has no GPU of its own.
    with pytest.raises(RuntimeError, match="Ray assigned this replica no GPU"):
        check_device("cuda", cuda_available=True, device_count=8, gpu_ids=[], torch_cuda="13.0")


def test_device_index_beyond_the_replicas_gpus_fails():
    with pytest.raises(RuntimeError, match="sees 1 GPU"):
        check_device("cuda:1", cuda_available=True, device_count=1, gpu_ids=["0"], torch_cuda="13.0")


@pytest.mark.parametrize("device,kw", [
    ("cpu", dict(cuda_available=False, device_count=0)),
    ("cuda", dict(cuda_available=True, device_count=1, gpu_ids=["3"])),
    ("cuda", dict(cuda_available=True, device_count=1, gpu_ids=None)),  # outside Ray: torch's word only
])
def test_usable_devices_pass(device, kw):
    check_device(device, **kw)


def test_replica_start_checks_the_device_before_loading_anything():
    """What LivenessService.__init__ runs first, with this machine's real torch (no CUDA here)."""
    import torch

    from components.serving.slot import require_device

    require_device("cpu")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="CUDA is not available in this replica"):
        require_device("cuda")
