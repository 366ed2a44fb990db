"""Ranger (RAdam + Lookahead), the optimiser the paper trains with (IV-A, lr 1e-4).

Built on ``torch.optim.RAdam`` with the Lookahead rule added on top, rather than on torch_optimizer:
``torch_optimizer.Lookahead`` (0.3.0) never calls ``Optimizer.__init__`` and fails on ``state_dict()``
under torch 2.x, and ``torch_optimizer.Ranger`` uses tensor-method signatures torch has deprecated.
Keeping the slow weights in ``self.state`` makes ``state_dict``/``load_state_dict`` (checkpoint resume)
and LR schedulers work with no special casing. Not pytorch-optimizer's Ranger either: a dependency of about a
hundred optimisers for one class, built on its own RAdam rather than torch's; this one is torch's RAdam plus the
Lookahead rule, checked step by step against a by-hand reference in tests/model/test_ranger.py.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch


class Ranger(torch.optim.RAdam):
    """RAdam whose weights are pulled back towards slow weights every ``k`` steps (Lookahead, alpha)."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.95, 0.999),
        eps: float = 1e-5,
        weight_decay: float = 0.0,
        k: int = 6,
        alpha: float = 0.5,
    ):
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"Lookahead k must be an int >= 1, got {k!r}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"Lookahead alpha must be in (0, 1], got {alpha!r}")
        if lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {lr!r}")
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        for group in self.param_groups:
            group.setdefault("lookahead_k", k)
            group.setdefault("lookahead_alpha", alpha)

    @torch.no_grad()
    def step(self, closure=None):
        # Slow weights start at the parameters as they were before the first update (Lookahead paper);
        # they are captured here, not in __init__, because RAdam initialises its own state lazily only
        # when a parameter's state is still empty.
        fresh = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and "slow_buffer" not in self.state[p]:
                    fresh[p] = p.detach().clone()
        loss = super().step(closure)
        for group in self.param_groups:
            k, alpha = group["lookahead_k"], group["lookahead_alpha"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if p in fresh:
                    state["slow_buffer"] = fresh[p]
                    state["lookahead_step"] = 0
                state["lookahead_step"] += 1
                if state["lookahead_step"] % k == 0:
                    slow = state["slow_buffer"]
                    slow.add_(p - slow, alpha=alpha)
                    p.copy_(slow)
        return loss


def ranger(
    params: Iterable,
    lr: float = 1e-4,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.95, 0.999),
    eps: float = 1e-5,
    k: int = 6,
    alpha: float = 0.5,
) -> torch.optim.Optimizer:
    """Ranger optimiser (defaults of the original Ranger: k=6, alpha=0.5, betas (0.95, 0.999))."""
    return Ranger(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, k=k, alpha=alpha)


__all__ = ["Ranger", "ranger"]
