"""DIIRF (eqs. 1-3) against scipy's reference IIR implementation, gradients and pole stability."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import lfilter, lfilter_zi

from components.model.eulernet import DIIRF, MAX_POLE_RADIUS
from components.model.optim import ranger

# (b0, b1, b2), (a1, a2): a first difference, a resonant band-pass with complex poles (|p| ~ 0.9),
# a low-pass with two real poles, and an arbitrary mix.
COEFFS = [
    ((1.0, -1.0, 0.0), (0.0, 0.0)),
    ((0.3, 0.0, -0.3), (-0.9, 0.81)),
    ((0.2, 0.4, 0.2), (-1.2, 0.35)),
    ((0.7, -0.25, 0.4), (0.5, -0.3)),
]


@pytest.mark.parametrize("b,a", COEFFS)
def test_matches_scipy_lfilter_float32(b, a):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 40, 5, 7)).astype(np.float32)  # (B, T, H, W): filter along T
    f = DIIRF(b, a, initial="zero")
    bb, aa = f.coefficients()
    # The reparametrisation reproduces the requested coefficients.
    np.testing.assert_allclose(bb, b, atol=1e-6)
    np.testing.assert_allclose(aa, [1.0, *a], atol=1e-6)
    with torch.no_grad():
        y = f(torch.from_numpy(x)).numpy()
    ref = lfilter(bb, aa, x.astype(np.float64), axis=1)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("b,a", COEFFS)
def test_matches_scipy_lfilter_float64_exactly(b, a):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 25, 3))
    f = DIIRF(b, a, initial="zero").double()
    bb, aa = f.coefficients()  # the float32-initialised parameters, read back at double precision
    with torch.no_grad():
        y = f(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, lfilter(bb, aa, x, axis=1), atol=1e-10)


@pytest.mark.parametrize("b,a", COEFFS)
def test_steady_initial_state_matches_lfilter_with_lfilter_zi(b, a):
    """Default initial state: scipy's ``lfilter(b, a, x, zi=lfilter_zi(b, a) * x[0])`` per pixel."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 20, 3, 4)) + 3.0  # an offset, so the initial state matters
    f = DIIRF(b, a).double()
    assert f.initial == "steady"
    bb, aa = f.coefficients()
    with torch.no_grad():
        y = f(torch.from_numpy(x)).numpy()
    zi = lfilter_zi(bb, aa)  # (2,)
    ref = np.empty_like(x)
    for i in np.ndindex(x.shape[0], *x.shape[2:]):
        sl = (i[0], slice(None), *i[1:])
        ref[sl], _ = lfilter(bb, aa, x[sl], zi=zi * x[sl][0])
    np.testing.assert_allclose(y, ref, atol=1e-9)


def test_steady_state_first_difference_answers_no_change_at_frame_zero():
    # A constant clip: the zero state answers b0 * x[0] at frame 0 (a spurious "change"); the steady state
    # answers 0 at every frame, as a clip that stood still should.
    x = torch.full((1, 5, 2), 4.0)
    with torch.no_grad():
        assert torch.allclose(DIIRF((1.0, -1.0, 0.0), (0.0, 0.0))(x), torch.zeros_like(x))
        assert DIIRF((1.0, -1.0, 0.0), (0.0, 0.0), initial="zero")(x)[0, 0, 0] == 4.0
    with pytest.raises(ValueError, match="initial state"):
        DIIRF(initial="ones")


def test_zero_initial_state_and_causality():
    f = DIIRF((0.5, 0.2, -0.1), (-0.4, 0.2), initial="zero")
    x = torch.zeros(1, 6, 2)
    x[0, 3] = 1.0  # impulse at t=3
    with torch.no_grad():
        y = f(x)
    assert torch.all(y[:, :3] == 0)  # nothing before the impulse: zero state, causal
    _, aa = f.coefficients()
    h = lfilter([0.5, 0.2, -0.1], aa, np.r_[1.0, 0.0, 0.0])  # impulse response
    np.testing.assert_allclose(y[0, 3:, 0].numpy(), h, atol=1e-6)


def test_gradients_reach_b_and_a():
    f = DIIRF((0.3, 0.1, -0.2), (-0.5, 0.3))
    x = torch.randn(4, 6, 3, 3)
    f(x).pow(2).mean().backward()
    assert f.b.grad is not None and f.r.grad is not None
    assert torch.all(f.b.grad.abs() > 0), f.b.grad
    assert torch.all(f.r.grad.abs() > 0), f.r.grad  # a1 and a2 through their parametrisation
    # Finite-difference check of the analytic gradients w.r.t. b and (r1, r2), in float64.
    g = DIIRF((0.3, 0.1, -0.2), (-0.5, 0.3)).double()
    xd = x[:2, :, :2, :2].double()
    b0 = g.b.detach().clone().requires_grad_()
    r0 = g.r.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda b, r: torch.func.functional_call(g, {"b": b, "r": r}, (xd,)), (b0, r0))


def _assert_stable(f: DIIRF):
    poles = f.poles()
    assert torch.all(poles.abs() <= MAX_POLE_RADIUS + 1e-6), poles
    _, (_, a1, a2) = f.coefficients()
    assert abs(a2) < 1.0 and abs(a1) < 1.0 + a2  # the unit stability triangle


OPTIMISERS = {
    "sgd": lambda p, lr: torch.optim.SGD(p, lr=lr),
    "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "ranger": lambda p, lr: ranger(p, lr=lr),
}


# Learning rates 1.5e4-5e4 times the paper's 1e-4. (Plain SGD at 2 or more diverges in b, the numerator,
# which no pole parametrisation can prevent; Adam-style steps are bounded by lr.)
@pytest.mark.parametrize("opt_name,lr", [("sgd", 1.5), ("adam", 5.0), ("ranger", 5.0)])
def test_poles_stay_stable_under_aggressive_optimisation(opt_name, lr):
    """Fit a target only an unstable filter can produce (an impulse response growing 1.5x per step)."""
    torch.manual_seed(0)
    f = DIIRF((0.5, 0.0, 0.0), (0.0, 0.0), initial="zero")  # an impulse response: the state starts at rest
    opt = OPTIMISERS[opt_name](f.parameters(), lr)
    x = torch.zeros(1, 12, 1)
    x[0, 0] = 1.0
    target = (1.5 ** torch.arange(12.0)).view(1, 12, 1)
    target = target / target.max()
    for _ in range(300):
        opt.zero_grad()
        loss = (f(x) - target).pow(2).mean()
        loss.backward()
        opt.step()
        _assert_stable(f)
    # The optimiser pushed the poles to the edge of what is allowed...
    assert f.poles().abs().max() > 0.95
    with torch.no_grad():
        y = f(torch.randn(2, 500, 4))  # ...and a long run still stays bounded
    assert torch.isfinite(y).all()
    assert torch.isfinite(f.b).all() and torch.isfinite(f.r).all()


def test_rejects_unstable_initial_denominator():
    with pytest.raises(ValueError, match="stability triangle"):
        DIIRF((1.0, 0.0, 0.0), (0.0, 1.0))
    with pytest.raises(ValueError, match="stability triangle"):
        DIIRF((1.0, 0.0, 0.0), (-1.6, 0.5))
    with pytest.raises(ValueError, match="3 numerator"):
        DIIRF((1.0, 0.0), (0.0, 0.0))
