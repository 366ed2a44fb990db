"""Ranger = torch's RAdam + Lookahead: the update rule, checkpoint resume and scheduler compatibility."""
from __future__ import annotations

import io

import pytest
import torch

from components.model.optim import Ranger, ranger


def _grad_of_quadratic(p: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return 2 * (p - c)


def test_update_equals_radam_with_lookahead_by_hand():
    torch.manual_seed(0)
    c = torch.randn(5)
    p = torch.nn.Parameter(torch.zeros(5))
    opt = ranger([p], lr=0.1, k=3, alpha=0.5)
    # Reference: plain torch RAdam on the fast weights, the Lookahead rule applied by hand.
    q = torch.nn.Parameter(torch.zeros(5))
    ref = torch.optim.RAdam([q], lr=0.1, betas=(0.95, 0.999), eps=1e-5)
    slow = q.detach().clone()
    for step in range(1, 11):
        p.grad = _grad_of_quadratic(p.detach(), c)
        opt.step()
        q.grad = _grad_of_quadratic(q.detach(), c)
        ref.step()
        if step % 3 == 0:
            with torch.no_grad():
                slow += 0.5 * (q - slow)
                q.copy_(slow)
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=1e-7)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups[0]["lr"] == 0.1


def _train(model, opt, xs, ys):
    for x, y in zip(xs, ys):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def test_state_dict_round_trip_resumes_identically():
    torch.manual_seed(0)
    xs = [torch.randn(8, 4) for _ in range(12)]
    ys = [torch.randn(8, 2) for _ in range(12)]
    a = torch.nn.Linear(4, 2)
    opt_a = ranger(a.parameters(), lr=1e-2, weight_decay=1e-3)
    _train(a, opt_a, xs[:5], ys[:5])  # stop mid Lookahead cycle (k=6)
    buf = io.BytesIO()
    torch.save({"model": a.state_dict(), "optim": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # what a Ray Train checkpoint resume does
    b = torch.nn.Linear(4, 2)
    b.load_state_dict(saved["model"])
    opt_b = ranger(b.parameters(), lr=1e-2, weight_decay=1e-3)
    opt_b.load_state_dict(saved["optim"])
    _train(a, opt_a, xs[5:], ys[5:])
    _train(b, opt_b, xs[5:], ys[5:])
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    assert "slow_buffer" in opt_b.state[next(b.parameters())]


def test_works_with_lr_scheduler_and_reduces_loss():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    x = torch.randn(64, 6)
    y = x[:, :1] * 2 - x[:, 1:2]
    opt = ranger(model.parameters(), lr=5e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=200)
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        sched.step()
        first = first if first is not None else float(loss.detach())
    assert float(loss.detach()) < 0.1 * first, (first, float(loss.detach()))
    assert opt.param_groups[0]["lr"] < 1e-5  # the scheduler drove the shared param groups


def test_argument_validation():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="k must be"):
        Ranger(p, k=0)
    with pytest.raises(ValueError, match="alpha"):
        Ranger(p, alpha=0.0)
    with pytest.raises(ValueError, match="learning rate"):
        ranger(p, lr=0.0)
