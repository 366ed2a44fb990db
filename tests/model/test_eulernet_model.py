"""EulerNet behaviour: shapes for every Table I variant, gradients, temporal mixing only through FCAM,
config validation, and a tiny model that overfits a tiny dataset."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from components.inference.tensors import clip_scores
from components.model.eulernet import (
    FCAM,
    TABLE_I,
    TEST_WIDTH,
    VARIANTS,
    ConcatFusion,
    EulerNet,
    EulerNetConfig,
    ResidualPyramid,
    create_model,
    variant_config,
    variant_label_type,
)

S = 32  # crop side for tests (map 4x4); the model works for any multiple of 8


def _clip(b=2, t=4, s=S, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, s, s, generator=g)  # (B, T, 3, S, S)


def _calibrated(model: EulerNet) -> EulerNet:
    """Eval-mode model whose BatchNorm statistics come from data, as after training.

    A fresh model in eval mode normalises with mean 0 / var 1 and its output is nearly constant, which
    would make "the output changes when..." tests vacuous; train mode would mix frames through batch
    statistics, which would make "frames are independent" tests wrong.
    """
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.reset_running_stats()
            mod.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for seed in range(3):
            model(_clip(b=2, seed=100 + seed))
    return model.eval()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_output_shape_range_and_score_for_every_variant(variant):
    torch.manual_seed(0)
    model = create_model(variant, width=TEST_WIDTH)
    v = VARIANTS[variant]
    assert model.cfg.fcam == v.fcam and model.cfg.fusion == v.fusion
    assert isinstance(model.fusion, ResidualPyramid if v.fusion == "residual_pyramid" else ConcatFusion)
    assert (len(model.fcam_modules()) > 0) == v.fcam
    for s in (32, 48):
        out = model(_clip(s=s))
        assert out.shape == (2, 4, s // 8, s // 8)
        assert torch.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0
    score = clip_scores(out)
    assert score.shape == (2,)
    torch.testing.assert_close(score, out.mean(dim=(1, 2, 3)))


def test_table_one_rows():
    # (label, FCAM, Residual Pyramid) per row of Table I.
    want = {
        "baseline": ("location_map", True, "residual_pyramid"),
        "c1": ("binary_mask", True, "residual_pyramid"),
        "c2": ("depth_map", False, "concat"),
        "c3": ("location_map", True, "concat"),
        "c4": ("location_map", False, "residual_pyramid"),
        "c5": ("depth_map", True, "residual_pyramid"),
    }
    got = {n: (v.label_type, v.fcam, v.fusion) for n, v in VARIANTS.items() if n in TABLE_I}
    assert got == want and set(TABLE_I) == set(want)
    # The repository default is the baseline plus the Eulerian input stage, nothing else.
    e = create_model("eulernet", width=TEST_WIDTH)
    assert e.euler is not None and e.cfg.euler_alpha > 0 and e.cfg.fcam and e.cfg.fusion == "residual_pyramid"
    assert create_model("baseline", width=TEST_WIDTH).euler is None
    assert variant_label_type("c5") == "depth_map"
    with pytest.raises(ValueError, match="unknown EulerNet variant"):
        variant_label_type("c9")


def test_full_size_architecture_matches_the_paper_layout():
    # Built, not run: 13 FCAMs (stem + 3 per stage x3 + 1 before fusion + 2 in the head), CDCN widths.
    model = create_model("baseline")
    assert len(model.fcam_modules()) == 13
    assert len(model.diirf_modules()) == 13
    assert model.stem.conv.out_channels == 64
    assert [u.conv.out_channels for u in model.stage1.units] == [128, 196, 128]
    assert model.head1.conv.in_channels == 3 * 128
    n_params = sum(p.numel() for p in model.parameters())
    assert 2_000_000 < n_params < 3_000_000, n_params  # CDCN is ~2.3 M


# One per distinct architecture (baseline, c1 and c5 share a network). DDP also needs every parameter used.
@pytest.mark.parametrize("variant", ["baseline", "c2", "c3", "c4"])
def test_every_parameter_gets_a_finite_nonzero_gradient(variant):
    torch.manual_seed(0)
    model = create_model(variant, width=TEST_WIDTH).train()
    x = _clip(b=2)
    target = torch.rand(2, 4, S // 8, S // 8)
    # FCAM compressors start at zero (constant 0.5 gates, see reset_parameters), so at step 0 the DIIRF
    # coefficients behind them get an exactly-zero gradient while the compressors get a nonzero one; after one
    # step every parameter must be learning.
    EulerNet.loss(model(x), target).backward()
    for fcam in model.fcam_modules():
        assert fcam.compress.weight.grad.abs().sum() > 0
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    loss = EulerNet.loss(model(x), target)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        if name.endswith("compress.bias"):
            # A constant offset before a differencing DIIRF started at steady state has no effect until the
            # filter's DC gain (b0 + b1 + b2) leaves zero: its gradient is ~0 (1e-14), not exactly 0.
            continue
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("variant", ["baseline", "c3"])
def test_fcam_model_mixes_frames_causally(variant):
    torch.manual_seed(0)
    model = create_model(variant, width=TEST_WIDTH)
    # At init every gate is a constant 0.5 (zero compressors); give them weights, as training does.
    with torch.no_grad():
        for fcam in model.fcam_modules():
            fcam.compress.weight.normal_(0.0, 0.2)
    model = _calibrated(model)
    x = _clip(b=2)
    with torch.no_grad():
        out = model(x)
        # Reversing the clip is not just reversing the output: frames talk through the DIIRF.
        rev = model(x.flip(1))
        assert (rev - out.flip(1)).abs().max() > 1e-4
        # Changing frame 0 changes the later frames' maps...
        x2 = x.clone()
        x2[:, 0] = torch.randn_like(x2[:, 0])
        out2 = model(x2)
        assert (out2[:, 1:] - out[:, 1:]).abs().max() > 1e-4
        # ...but changing the last frame leaves the earlier ones alone (the filter is causal).
        x3 = x.clone()
        x3[:, 3] = torch.randn_like(x3[:, 3])
        out3 = model(x3)
        torch.testing.assert_close(out3[:, :3], out[:, :3])
        assert (out3[:, 3] - out[:, 3]).abs().max() > 1e-4


@pytest.mark.parametrize("variant", ["c2", "c4"])
def test_model_without_fcam_treats_frames_independently(variant):
    torch.manual_seed(0)
    model = _calibrated(create_model(variant, width=TEST_WIDTH))
    x = _clip(b=2)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(model(x[:, perm]), out[:, perm], rtol=1e-5, atol=1e-6)
        x2 = x.clone()
        x2[:, 0] = torch.randn_like(x2[:, 0])
        out2 = model(x2)
    torch.testing.assert_close(out2[:, 1:], out[:, 1:], rtol=1e-5, atol=1e-6)
    assert (out2[:, 0] - out[:, 0]).abs().max() > 1e-4


def test_fcam_fast_compression_equals_the_3x3_convolution():
    torch.manual_seed(0)
    fcam = FCAM(7, (1.0, -1.0, 0.0), (0.0, 0.0)).double()
    x = torch.randn(3, 7, 9, 11, dtype=torch.float64, requires_grad=True)
    fast = fcam.compressed(x)
    ref = fcam.compress(x)  # the plain nn.Conv2d holding the same weights
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(ref)
    grads_fast = torch.autograd.grad(fast, (x, fcam.compress.weight, fcam.compress.bias), g)
    grads_ref = torch.autograd.grad(ref, (x, fcam.compress.weight, fcam.compress.bias), g)
    for a, b in zip(grads_fast, grads_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert "taps" not in fcam.state_dict() and "compress.weight" in fcam.state_dict()


def test_fcam_gate_is_sigmoid_of_filtered_compression():
    torch.manual_seed(0)
    fcam = FCAM(5, (1.0, -1.0, 0.0), (0.0, 0.0))
    x = torch.randn(2 * 3, 5, 6, 6)  # (B*T, C, H, W) with T = 3
    with torch.no_grad():
        s = fcam.compress(x).view(2, 3, 6, 6)
        # first difference from the steady state at frame 0: "no change" there
        diff = torch.cat([torch.zeros_like(s[:, :1]), s[:, 1:] - s[:, :-1]], dim=1)
        want = x * torch.sigmoid(diff).view(6, 1, 6, 6)
        torch.testing.assert_close(fcam(x, frames=3), want)


def test_input_validation():
    model = create_model("baseline", width=TEST_WIDTH)
    with pytest.raises(ValueError, match="clips of 4 frames"):
        model(torch.randn(1, 3, 3, S, S))
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.randn(1, 4, 3, 36, 36))
    with pytest.raises(ValueError, match=r"\(B, T, 3, S, S\)"):
        model(torch.randn(4, 3, S, S))
    # clip_len is configurable
    m3 = create_model("c4", width=TEST_WIDTH, clip_len=3)
    assert m3(torch.randn(1, 3, 3, S, S)).shape == (1, 3, S // 8, S // 8)


def test_config_validation_and_round_trip():
    cfg = variant_config("c3", width=0.25)
    assert cfg.fusion == "concat" and cfg.fcam is True and cfg.width == 0.25
    assert EulerNetConfig.from_dict(cfg.to_dict()) == cfg
    assert all(not isinstance(v, tuple) for v in cfg.to_dict().values())
    with pytest.raises(ValueError, match="fusion"):
        EulerNetConfig(fusion="sum")
    with pytest.raises(ValueError, match="width"):
        EulerNetConfig(width=0.0)
    with pytest.raises(ValueError, match="fcam"):
        EulerNetConfig(fcam="yes")
    with pytest.raises(ValueError, match="clip_len"):
        EulerNetConfig(clip_len=0)
    with pytest.raises(ValueError, match="block_channels"):
        EulerNetConfig(block_channels=(8, 8))
    with pytest.raises(ValueError, match="stability triangle"):
        EulerNetConfig(diirf_a=(0.0, 1.0))
    with pytest.raises(ValueError, match="unknown EulerNetConfig fields"):
        create_model("baseline", widht=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.width = 1.0  # type: ignore[misc]


def test_tiny_model_overfits_a_tiny_dataset():
    """6 clips (3 live with a bright patch to find, 3 attacks with all-zero maps); loss must fall."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    n, t, s, m = 6, 4, 32, 4
    x = torch.randn(n, t, 3, s, s, generator=g) * 0.3  # (N, T, 3, S, S)
    y = torch.zeros(n, t, m, m)
    live = torch.arange(n) % 2 == 0
    x[live, :, 0, 8:24, 8:24] += 1.0  # live clips carry a bright centre patch...
    y[live, :, 1:3, 1:3] = 1.0  # ...and a centred location map
    model = create_model("baseline", width=TEST_WIDTH).train()
    # Adam rather than Ranger only for speed: RAdam's warm-up and Lookahead's pull-back make Ranger
    # need several times more steps (its own convergence is tested in test_ranger.py).
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = EulerNet.loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    # The output layer starts near 0.5 everywhere (loss 0.25 against 0/1 maps): a quarter of that is learning.
    assert losses[-1] < 0.25 * losses[0], losses[::5]
    model.eval()
    with torch.no_grad():
        scores = clip_scores(model(x))
    assert scores[live].min() > scores[~live].max()  # it separates what it was trained on


def test_eulerian_input_feeds_the_blurred_temporal_deviation():
    from components.model.eulernet import EulerianInput

    torch.manual_seed(0)
    x = torch.randn(2, 4, 3, 16, 16)
    out = EulerianInput(alpha=10.0, grid=4)(x)
    assert out.shape == (2, 4, 6, 16, 16)
    torch.testing.assert_close(out[:, :, :3], x)
    low = torch.nn.functional.avg_pool2d(x.reshape(8, 3, 16, 16), 4).reshape(2, 4, 3, 4, 4)
    want = 10.0 * (low - low.mean(dim=1, keepdim=True))
    torch.testing.assert_close(out[:, :, 3:, ::4, ::4], want)  # nearest upsampling: block corners
    # A clip that does not change over time has no Eulerian signal at all.
    still = x[:, :1].expand(2, 4, 3, 16, 16)
    assert EulerianInput(10.0, 4)(still)[:, :, 3:].abs().max() == 0


def test_eulerian_model_lets_every_frame_see_the_clip():
    torch.manual_seed(0)
    model = create_model("c4", width=TEST_WIDTH, euler_alpha=20.0).eval()  # no FCAM: only the input stage
    assert model.stem.conv.in_channels == 6
    x = torch.randn(1, 4, 3, S, S)
    y = x.clone()
    y[0, 3] += 0.5  # change only the last frame
    with torch.no_grad():
        a, b = model(x), model(y)
    assert not torch.allclose(a[0, 0], b[0, 0])  # frame 0 sees it through the clip mean
    plain = create_model("c4", width=TEST_WIDTH).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0, 0], plain(y)[0, 0])  # the paper's no-FCAM model does not
    cfg = variant_config("baseline", euler_alpha=5.0, euler_grid=4)
    assert EulerNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="euler_alpha"):
        EulerNetConfig(euler_alpha=-1.0)
    with pytest.raises(ValueError, match="euler_grid"):
        EulerNetConfig(euler_grid=0)
    # A checkpoint written before diirf_initial existed keeps the zero state it was trained with.
    old = cfg.to_dict()
    old.pop("diirf_initial")
    assert EulerNetConfig.from_dict(old).diirf_initial == "zero"


def test_init_keeps_activations_alive_and_eval_mode_scores_differ_after_a_short_fit():
    """The failure this guards against: after a few dozen steps every clip scored sigmoid(bias) in eval mode,
    because BN running statistics (starting at var 1) met conv outputs of variance ~0.04 through ~14 layers."""
    from components.training.bn import recalibrate_batchnorm

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 4, 3, 32, 32, generator=g)
    y = (torch.arange(8) % 2 == 0).float().view(8, 1, 1, 1).expand(8, 4, 4, 4).contiguous()
    x[y[:, 0, 0, 0] > 0, :, 1] += 0.5
    model = create_model("baseline", width=TEST_WIDTH)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(6):
        opt.zero_grad()
        EulerNet.loss(model(x), y).backward()
        opt.step()
    recalibrate_batchnorm(model, [x])
    with torch.no_grad():
        train_scores = clip_scores(model.train()(x))
        eval_scores = clip_scores(model.eval()(x))
    assert eval_scores.std() > 1e-3, eval_scores  # not one constant for every clip
    # With statistics recomputed on the same batch, eval mode reproduces train mode.
    # (atol: running_var is the unbiased estimate, train mode normalises by the biased one)
    torch.testing.assert_close(eval_scores, train_scores, atol=1e-3, rtol=0)


def test_batchnorm_recalibration_replaces_stale_running_statistics():
    from components.training.bn import recalibrate_batchnorm

    torch.manual_seed(0)
    model = create_model("c4", width=TEST_WIDTH)
    x = torch.randn(4, 4, 3, 16, 16) * 3.0 + 1.0
    bn = model.stem.bn
    bn.running_mean.fill_(7.0)  # stale statistics from "earlier weights"
    assert recalibrate_batchnorm(model.eval(), [x[:2], x[2:]]) == 2
    assert not model.training  # mode restored
    with torch.no_grad():
        feats = model.stem.conv(x.reshape(16, 3, 16, 16))
    # Two equal batches averaged = the statistics of the whole set.
    torch.testing.assert_close(bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-4, rtol=1e-4)
    assert bn.momentum == 0.1  # the training momentum is back
    assert recalibrate_batchnorm(model, []) == 0


def test_fcam_gates_start_constant_so_they_add_no_temporal_noise():
    torch.manual_seed(0)
    fcam = create_model("baseline", width=TEST_WIDTH).fcam_modules()[0]
    x = torch.randn(2 * 4, fcam.compress.in_channels, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(fcam(x, frames=4), 0.5 * x)
