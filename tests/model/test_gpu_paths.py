"""The GPU training paths, checked on the CPU (issue 16): DIIRF under mixed precision, SyncBatchNorm exactly on
multi-GPU runs with checkpoints a plain EulerNet loads, BatchNorm recalibration that never waits on other ranks,
train state read onto the CPU, and clips too short for the recurrence rejected."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from components.model.eulernet import DIIRF, EulerNet, EulerNetConfig, create_model
from components.model.variants import TEST_WIDTH


# ------------------------------------------------------------------------------------------ DIIRF and AMP
def _coefficient_grads(x: torch.Tensor, autocast_dtype: torch.dtype | None = None):
    f = DIIRF((0.7, -0.25, 0.4), (0.5, -0.3))
    with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        y = f(x)
    y.float().sum().backward()
    return y, f.b.grad.clone(), f.r.grad.clone()


def test_diirf_runs_in_float32_under_bfloat16_autocast():
    torch.manual_seed(0)
    x = (torch.randn(2, 4, 50, 40) * 50.0 + 10.0).to(torch.bfloat16)  # large activations, 2,000 px per frame
    _, b_ref, r_ref = _coefficient_grads(x.float())  # the same values, all in float32, no autocast
    y, b, r = _coefficient_grads(x, torch.bfloat16)
    assert y.dtype == torch.bfloat16  # the output goes back to the input's dtype
    assert torch.isfinite(b).all() and torch.isfinite(r).all()
    # Computed in bfloat16, these sums over every pixel of every frame came out ~0.1-1 % off; in float32
    # they match the float32 reference.
    torch.testing.assert_close(b, b_ref, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(r, r_ref, rtol=1e-5, atol=1e-3)


def test_diirf_coefficient_gradients_stay_finite_with_float16_inputs():
    """The issue's case: float16 activations whose coefficient gradient sums to 80,000 (float16 max: 65,504)."""
    x = torch.full((2, 4, 100, 100), 10.0, dtype=torch.float16, requires_grad=True)  # 80,000 values of 10
    f = DIIRF()  # (1, -1, 0): y[0] = 0 (steady state), then the first difference (0 for a still input)
    y = f(x)
    assert y.dtype == torch.float16
    y.float().sum().backward()
    assert torch.isfinite(f.b.grad).all() and torch.isfinite(f.r.grad).all(), (f.b.grad, f.r.grad)
    assert torch.isfinite(x.grad).all() and x.grad.dtype == torch.float16
    assert f.b.grad.abs().max() > 65_504  # a value float16 cannot hold, carried in float32


def test_diirf_keeps_float64():
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    f = DIIRF().double()
    assert f(x).dtype == torch.float64


def test_whole_model_trains_a_step_under_bfloat16_autocast():
    torch.manual_seed(0)
    model = create_model("baseline", width=TEST_WIDTH)
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = model(x)
    loss = EulerNet.loss(maps.float(), torch.rand(2, 4, 4, 4))
    loss.backward()
    grads = [m.b.grad for m in model.diirf_modules()] + [m.r.grad for m in model.diirf_modules()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


# ------------------------------------------------------------------------------------------ clip length
def test_clip_len_below_two_is_rejected_everywhere():
    from components.inference.config import CheckpointError, InferenceConfig
    from components.labeling.config import LabelConfig

    with pytest.raises(ValueError, match="clip_len must be >= 2"):
        EulerNetConfig(clip_len=1)
    with pytest.raises(CheckpointError, match="clip_len must be >= 2"):
        InferenceConfig(variant="baseline", crop_size=32, clip_len=1)
    with pytest.raises(ValueError, match="clip_len must be >= 2"):
        LabelConfig(clip_len=1)
    # One crop rule for labeling and the checkpoint (they used to disagree: 32 and 8): a 16-px crop is neither's.
    with pytest.raises(CheckpointError, match="multiple of 8 and >= 32"):
        InferenceConfig(variant="baseline", crop_size=16)
    with pytest.raises(ValueError, match="multiple of 8 and >= 32"):
        LabelConfig(crop_size=16)
    EulerNetConfig(clip_len=2)  # two frames are enough for a difference


# ------------------------------------------------------------------------------------------ SyncBatchNorm
def _bn_types(model: nn.Module) -> list[type]:
    return [type(m) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("device_type,world,sync", [
    ("cuda", 2, True), ("cuda", 8, True), ("cuda", 1, False), ("cpu", 2, False), ("cpu", 1, False),
])
def test_sync_batchnorm_exactly_when_several_workers_train_on_cuda(device_type, world, sync):
    from components.training.loop import maybe_sync_batchnorm

    model = create_model("baseline", width=TEST_WIDTH)
    n = len(_bn_types(model))
    out = maybe_sync_batchnorm(model, device_type, world)
    assert out.cfg == model.cfg  # still the EulerNet (checkpoints read .cfg)
    want = nn.SyncBatchNorm if sync else nn.BatchNorm2d
    assert _bn_types(out) == [want] * n and n > 0


def test_checkpoint_of_a_sync_batchnorm_model_loads_into_a_plain_eulernet(tmp_path):
    from components.inference.checkpoint import save_checkpoint
    from components.inference.config import InferenceConfig
    from components.inference.predictor import Predictor
    from components.training.loop import maybe_sync_batchnorm

    torch.manual_seed(0)
    plain = create_model("baseline", width=TEST_WIDTH)
    synced = maybe_sync_batchnorm(create_model("baseline", width=TEST_WIDTH), "cuda", 2)
    assert set(synced.state_dict()) == set(plain.state_dict())  # the same keys, running statistics included
    with torch.no_grad():  # statistics a run would have produced
        for m in synced.modules():
            if isinstance(m, nn.SyncBatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(17)
    path = save_checkpoint(tmp_path / "checkpoint.pt", synced, InferenceConfig(variant="baseline", crop_size=32))
    p = Predictor.from_checkpoint(path)
    assert all(t is nn.BatchNorm2d for t in _bn_types(p.model))
    for k, v in synced.state_dict().items():
        torch.testing.assert_close(p.model.state_dict()[k], v, msg=k)
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():  # eval mode: SyncBatchNorm is a plain BatchNorm with the same statistics
        torch.testing.assert_close(p.model(x), synced.eval()(x))


def test_rank0_recalibration_of_sync_batchnorm_runs_no_collective(monkeypatch):
    """Only rank 0 recalibrates. In train mode a SyncBatchNorm all-reduces its statistics whenever a process
    group of more than one rank exists, and would wait for ranks that never join: simulate that group."""
    import torch.distributed as dist

    from components.training.bn import recalibrate_batchnorm
    from components.training.loop import maybe_sync_batchnorm

    torch.manual_seed(0)
    plain = create_model("c4", width=TEST_WIDTH)
    synced = maybe_sync_batchnorm(create_model("c4", width=TEST_WIDTH), "cuda", 2)
    synced.load_state_dict(plain.state_dict())
    x = torch.randn(4, 4, 3, 16, 16) * 2.0 + 0.5
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    with pytest.raises(ValueError, match="SyncBatchNorm"):  # a bare one tries the collective (refused on CPU)
        synced.train()(x)
    assert recalibrate_batchnorm(synced.eval(), [x[:2], x[2:]]) == 2
    recalibrate_batchnorm(plain.eval(), [x[:2], x[2:]])
    assert all(t is nn.SyncBatchNorm for t in _bn_types(synced))  # converted back after the local pass
    assert not synced.training
    for k, v in plain.state_dict().items():
        torch.testing.assert_close(synced.state_dict()[k], v, msg=k)


# ------------------------------------------------------------------------------------------ resume
def test_train_state_is_read_onto_the_cpu_and_restores_into_a_fresh_run(tmp_path):
    from components.model.optim import ranger
    from components.training.loop import STATE_FILE, read_train_state, restore

    torch.manual_seed(0)
    model = create_model("c4", width=TEST_WIDTH)
    opt = ranger(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    x, y = torch.randn(2, 4, 3, 16, 16), torch.rand(2, 4, 2, 2)
    for _ in range(2):
        opt.zero_grad()
        EulerNet.loss(model(x), y).backward()
        opt.step()
        sched.step()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": None,
                "scheduler": sched.state_dict(), "epoch": 3, "history": [{"epoch": 3}], "resumed_from": []},
               tmp_path / STATE_FILE)

    state = read_train_state(tmp_path)
    tensors = [v for s in state["optimizer"]["state"].values() for v in s.values() if torch.is_tensor(v)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)
    fresh = create_model("c4", width=TEST_WIDTH)
    fresh_opt = ranger(fresh.parameters(), lr=1e-3)
    fresh_sched = torch.optim.lr_scheduler.LambdaLR(fresh_opt, lambda step: 1.0)
    start, history, resumed = restore(state, fresh, fresh_opt, fresh_sched, scaler)
    assert (start, history, resumed) == (3, [{"epoch": 3}], [3])
    steps = [s["step"] for s in fresh_opt.state.values()]
    assert steps and all(torch.is_tensor(s) and s.device.type == "cpu" for s in steps)  # RAdam's counters
    assert all(s["lookahead_step"] == 2 for s in fresh_opt.state.values())
    fresh_opt.zero_grad()
    EulerNet.loss(fresh(x), y).backward()
    fresh_opt.step()  # the restored optimiser goes on
