"""EulerNet (paper section II-A, Figs. 2-4, eqs. 1-6) as one configurable model.

Layout follows timm: building blocks, the model, the builder, configs, then the registered variants
(the paper's baseline and the Table I ablations C1-C5 are configurations of this one model).

Tensor layout: the model takes clips ``(B, T, 3, S, S)``. Convolutions run per frame with time folded
into the batch (``(B*T, C, H, W)``, frame-major inside each clip); FCAM is the only place where frames
of a clip see each other, through the DIIRF recurrence over T.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

# The variant table and the names it checks against live in a torch-free module: configs read them without torch.
from .variants import (  # noqa: F401
    DIIRF_INITIAL,
    FUSIONS,
    LABEL_TYPES,
    TABLE_I,
    TEST_WIDTH,
    VARIANTS,
    Variant,
    variant_label_type,
    variant_named,
)

# Largest pole magnitude the DIIRF may reach. The stability triangle is scaled by it (poles p -> rho p),
# so even when tanh saturates to exactly +-1 in float32 the poles stay at |p| <= rho, strictly stable.
# With clips of a few frames nothing useful needs a pole closer to the unit circle.
MAX_POLE_RADIUS = 0.99


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------
def _check_denominator(a1: float, a2: float) -> None:
    # Poles of 1 + a1 z^-1 + a2 z^-2 lie within radius rho iff (a1/rho, a2/rho^2) lies in the
    # stability triangle |a2'| < 1, |a1'| < 1 + a2'.
    rho = MAX_POLE_RADIUS
    u1, u2 = a1 / rho, a2 / rho**2
    if not (abs(u2) < 1.0 and abs(u1) < 1.0 + u2):
        raise ValueError(
            f"DIIRF initial denominator (a1={a1}, a2={a2}) puts a pole at or beyond radius {rho}: "
            f"(a1/{rho}, a2/{rho}^2) must lie in the stability triangle |a2| < 1, |a1| < 1 + a2"
        )


class DIIRF(nn.Module):
    """Differential IIR filter: a 2nd-order IIR over time, per pixel, in transposed direct form II.

    Eqs. 1-3:
        y[n]  = b0 x[n] + h1[n-1]
        h1[n] = b1 x[n] + h2[n-1] - a1 y[n]
        h2[n] = b2 x[n] - a2 y[n]
    i.e. ``scipy.signal.lfilter([b0, b1, b2], [1, a1, a2], x, zi=...)`` along the time axis.

    ``initial="steady"`` (default) starts the state where it would be had the input stood still at x[0]
    forever (``scipy.signal.lfilter_zi(b, a) * x[0]``): frame 0 then answers "no change" instead of the
    paper's zero state, whose y[0] = b0 x[0] is a large spurious response to the clip simply starting
    (docs/model.md, "Frame 0"). ``initial="zero"`` is the paper's h1 = h2 = 0.

    b0, b1, b2 are free parameters. a1, a2 are reparametrised from unconstrained (r1, r2) so the poles
    always lie inside the circle of radius rho = MAX_POLE_RADIUS, whatever the optimiser does:
        u2 = tanh(r2),  u1 = (1 + u2) tanh(r1)   (the stability triangle),   a1 = rho u1,  a2 = rho^2 u2.
    Input ``(B, T, ...)``; filtering runs along dim 1, vectorised over everything else.
    """

    def __init__(self, b: tuple[float, float, float] = (1.0, -1.0, 0.0), a: tuple[float, float] = (0.0, 0.0),
                 initial: str = "steady"):
        super().__init__()
        if initial not in DIIRF_INITIAL:
            raise ValueError(f"DIIRF initial state must be one of {DIIRF_INITIAL}, got {initial!r}")
        self.initial = initial
        if len(b) != 3 or len(a) != 2:
            raise ValueError(f"DIIRF needs 3 numerator and 2 denominator coefficients, got b={b}, a={a}")
        a1, a2 = float(a[0]), float(a[1])
        _check_denominator(a1, a2)
        rho = MAX_POLE_RADIUS
        u1, u2 = a1 / rho, a2 / rho**2
        r2 = math.atanh(u2)
        r1 = math.atanh(u1 / (1.0 + u2))
        self.b = nn.Parameter(torch.tensor([float(v) for v in b], dtype=torch.float32))
        self.r = nn.Parameter(torch.tensor([r1, r2], dtype=torch.float32))

    def denominator(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a1, a2) as differentiable scalars; the poles are always within radius MAX_POLE_RADIUS."""
        rho = MAX_POLE_RADIUS
        u2 = torch.tanh(self.r[1])
        u1 = (1.0 + u2) * torch.tanh(self.r[0])
        return rho * u1, (rho * rho) * u2

    def coefficients(self) -> tuple[list[float], list[float]]:
        """Plain ``(b, a)`` lists in scipy's convention, ``a = [1, a1, a2]``."""
        with torch.no_grad():
            a1, a2 = self.denominator()
            return [float(v) for v in self.b], [1.0, float(a1), float(a2)]

    def poles(self) -> torch.Tensor:
        """Complex poles (2,) of the current filter (roots of z^2 + a1 z + a2)."""
        with torch.no_grad():
            a1, a2 = self.denominator()
            disc = torch.complex(a1 * a1 - 4 * a2, torch.zeros(())).sqrt()
            return torch.stack([(-a1 + disc) / 2, (-a1 - disc) / 2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, ...)
        """Filtered ``x``, same shape and dtype. The recurrence itself always runs in at least float32, with
        autocast off: under float16 autocast the products with the 0-dim coefficients stay float16, so their
        gradients (sums over every pixel of every frame of the batch) overflow to inf, the step is skipped and
        the loss scale collapses; and the recurrence accumulates rounding over the frames."""
        with torch.profiler.record_function("DIIRF"):
            work = torch.promote_types(x.dtype, torch.float32)  # float16/bfloat16 -> float32; float64 stays
            with torch.autocast(device_type=x.device.type, enabled=False):
                y = self._filter(x.to(work))
            return y.to(x.dtype)

    def _filter(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, ...) at full precision
        b0, b1, b2 = self.b[0], self.b[1], self.b[2]
        a1, a2 = self.denominator()
        outs = []
        h1 = h2 = None
        if self.initial == "steady":
            # lfilter_zi for transposed direct form II: the state a constant input x[0] settles into.
            # 1 + a1 + a2 > 0 always (poles inside radius rho < 1), so the DC gain is finite.
            gain = (b0 + b1 + b2) / (1.0 + a1 + a2)
            x0 = x[:, 0]  # (B, ...)
            h2 = (b2 - a2 * gain) * x0
            h1 = (b1 + b2 - (a1 + a2) * gain) * x0
        for t in range(x.shape[1]):
            xt = x[:, t]  # (B, ...)
            # The state starts at zero, so the first step is just b0 x[0] (no zero tensors to add).
            y = b0 * xt if h1 is None else b0 * xt + h1
            h1 = b1 * xt - a1 * y if h2 is None else b1 * xt + h2 - a1 * y
            h2 = b2 * xt - a2 * y
            outs.append(y)
        return torch.stack(outs, dim=1)  # (B, T, ...)


def _tap_kernel() -> torch.Tensor:
    """(1, 9, 3, 3) one-hot kernel: output = sum over taps k=(i, j) of input channel k shifted by (i, j)."""
    k = torch.zeros(1, 9, 3, 3)
    for i in range(3):
        for j in range(3):
            k[0, 3 * i + j, i, j] = 1.0
    return k


class FCAM(nn.Module):
    """Feature-compressed attention module (Fig. 3): Conv3x3 -> 1 channel -> DIIRF over time -> sigmoid,
    multiplied back onto the input features."""

    def __init__(self, channels: int, diirf_b: tuple[float, float, float], diirf_a: tuple[float, float],
                 diirf_initial: str = "steady"):
        super().__init__()
        self.compress = nn.Conv2d(channels, 1, kernel_size=3, padding=1)  # holds the weights; see compressed()
        self.diirf = DIIRF(diirf_b, diirf_a, diirf_initial)
        self.register_buffer("taps", _tap_kernel(), persistent=False)

    def compressed(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W) -> (N, 1, H, W)
        """Exactly ``self.compress(x)``, computed as a 1x1 projection onto the 9 kernel taps followed by a
        fixed one-hot 3x3 that sums the shifted taps. A 3x3 convolution with a single output channel is a
        poor fit for oneDNN: this form is ~2.4x faster forward+backward on CPU, cutting FCAM's share of a
        CPU training step (S=128, width 1) from ~22% to ~13% (docs/model.md)."""
        w = self.compress.weight  # (1, C, 3, 3)
        proj = w.permute(2, 3, 1, 0).reshape(9, w.shape[1], 1, 1)  # tap k = 3i + j
        taps = F.conv2d(x, proj)  # (N, 9, H, W)
        return F.conv2d(taps, self.taps, self.compress.bias, padding=1)  # (N, 1, H, W)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:  # x (B*T, C, H, W)
        with torch.profiler.record_function("FCAM"):
            bt, _, h, w = x.shape
            if bt % frames:
                raise ValueError(f"FCAM got {bt} frames in the batch, not a multiple of the clip length {frames}")
            s = self.compressed(x).reshape(bt // frames, frames, h, w)  # (B, T, H, W)
            gate = torch.sigmoid(self.diirf(s)).reshape(bt, 1, h, w)  # (B*T, 1, H, W)
            return x * gate  # (B*T, C, H, W)


class ConvUnit(nn.Module):
    """Conv3x3-BN-ReLU, followed by an FCAM when enabled (one "FCAM" box of Fig. 2)."""

    def __init__(self, cin: int, cout: int, fcam: bool, diirf_b, diirf_a, diirf_initial: str = "steady"):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.fcam = FCAM(cout, diirf_b, diirf_a, diirf_initial) if fcam else None

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:  # (B*T, Cin, H, W)
        x = F.relu(self.bn(self.conv(x)), inplace=True)  # (B*T, Cout, H, W)
        if self.fcam is not None:
            x = self.fcam(x, frames)
        return x


class Stage(nn.Module):
    """Three ConvUnits then max pooling (CDCN block): halves the resolution."""

    def __init__(self, cin: int, chans: tuple[int, int, int], fcam: bool, diirf_b, diirf_a,
                 diirf_initial: str = "steady"):
        super().__init__()
        c = (cin, *chans)
        self.units = nn.ModuleList(ConvUnit(c[i], c[i + 1], fcam, diirf_b, diirf_a, diirf_initial)
                                   for i in range(3))
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        for unit in self.units:
            x = unit(x, frames)
        return self.pool(x)  # (B*T, C, H/2, W/2)


def _down(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # Area averaging rather than bilinear: a 4x bilinear shrink samples only a few input pixels and
    # aliases, losing exactly the fine residual the pyramid is meant to carry.
    return F.adaptive_avg_pool2d(x, size)


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ResidualPyramid(nn.Module):
    """Eqs. 4-6: S128 = Conv(F128 - Up(F64)), S64 = Conv(F64 - Up(F32)),
    out32 = Concat(Down(S128), Down(S64), F32). All three levels carry ``channels`` channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv128 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )
        self.conv64 = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )

    def forward(self, f128: torch.Tensor, f64: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
        s128 = self.conv128(f128 - _up(f64, f128.shape[-2:]))  # (B*T, C, S/2, S/2)
        s64 = self.conv64(f64 - _up(f32, f64.shape[-2:]))  # (B*T, C, S/4, S/4)
        size = f32.shape[-2:]
        return torch.cat([_down(s128, size), _down(s64, size), f32], dim=1)  # (B*T, 3C, S/8, S/8)


class ConcatFusion(nn.Module):
    """Table I's "w/o Residual Pyramid": plain multi-scale concatenation (as in CDCN)."""

    def forward(self, f128: torch.Tensor, f64: torch.Tensor, f32: torch.Tensor) -> torch.Tensor:
        size = f32.shape[-2:]
        return torch.cat([_down(f128, size), _down(f64, size), f32], dim=1)  # (B*T, 3C, S/8, S/8)


class EulerianInput(nn.Module):
    """An Eulerian-magnification input stage (a documented deviation from the paper, off in its variants).

    Eulerian video magnification (Wu et al., SIGGRAPH 2012) makes a faint colour change over time visible by
    low-passing each frame in space, taking the change over time and amplifying it. Here: area-average each
    frame over a ``grid x grid`` grid of blocks (the pulse is spatially smooth, sensor and JPEG noise is not:
    averaging 8x8 px raises a per-pixel SNR of ~0.1 to ~1; a grid rather than a pixel size keeps the same
    share of the face per block at every crop size), subtract the clip's temporal mean, multiply by
    ``alpha`` and hand the result to the network as extra channels beside the frame itself. Every frame of the
    clip, frame 0 included, thereby carries the clip's temporal deviation from its first layer on, which the
    FCAM/DIIRF gates alone find only slowly at CPU scale (docs/model.md, "Eulerian input").
    """

    def __init__(self, alpha: float, grid: int):
        super().__init__()
        self.alpha = float(alpha)
        self.grid = int(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C, S, S) -> (B, T, 2C, S, S)
        b, t, c, h, w = x.shape
        z = x.reshape(b * t, c, h, w)
        if self.grid < min(h, w):
            low = F.adaptive_avg_pool2d(z, self.grid)  # (B*T, C, grid, grid)
            z = F.interpolate(low, size=(h, w), mode="nearest")  # (B*T, C, S, S)
        z = z.reshape(b, t, c, h, w)
        dev = (z - z.mean(dim=1, keepdim=True)) * self.alpha  # (B, T, C, S, S)
        return torch.cat([x, dev], dim=2)  # (B, T, 2C, S, S)


# --------------------------------------------------------------------------------------------------
# Config and model
# --------------------------------------------------------------------------------------------------
def scaled(channels: int, width: float) -> int:
    """Channel count at a width multiplier (never below 4 so tiny test models still have features)."""
    return max(4, int(round(channels * width)))


@dataclass(frozen=True)
class EulerNetConfig:
    """Architecture of one EulerNet. Defaults are the paper's full-size baseline (CDCN widths)."""

    width: float = 1.0  # channel multiplier; 1.0 = paper size, ~0.125 for CPU tests
    fcam: bool = True  # FCAM after every conv unit (Table I "FCAM" column)
    fusion: str = "residual_pyramid"  # "residual_pyramid" (eqs. 4-6) or "concat" (Table I "w/o RP")
    clip_len: int = 4  # frames per clip T (paper: 4 frames at interval 3)
    in_channels: int = 3
    stem_channels: int = 64
    block_channels: tuple[int, int, int] = (128, 196, 128)  # per stage; the last one is the pyramid width
    head_channels: tuple[int, int] = (128, 64)  # the two Conv+FCAM layers after fusion
    # Initial DIIRF coefficients (b0, b1, b2) and (a1, a2). The default is a first difference, the
    # "differential" filter: at start each gate reacts to frame-to-frame change, as in Eulerian magnification.
    diirf_b: tuple[float, float, float] = (1.0, -1.0, 0.0)
    diirf_a: tuple[float, float] = (0.0, 0.0)
    diirf_initial: str = "steady"  # "steady" (lfilter_zi at frame 0) | "zero" (the paper's eqs. 1-3 as printed)
    # Eulerian input stage (EulerianInput): 0 = off (the paper); > 0 = amplification of the blurred temporal
    # deviation fed as extra input channels. euler_grid: blocks per crop side of the spatial averaging.
    euler_alpha: float = 0.0
    euler_grid: int = 8

    def __post_init__(self):
        # Checkpoints and YAML round-trip tuples as lists: accept both, store tuples (hashable, frozen).
        for name in ("block_channels", "head_channels", "diirf_b", "diirf_a"):
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
        if isinstance(self.width, int) and not isinstance(self.width, bool):
            object.__setattr__(self, "width", float(self.width))
        if not isinstance(self.width, float) or not (0.0 < self.width <= 4.0):
            raise ValueError(f"EulerNetConfig.width must be a float in (0, 4], got {self.width!r}")
        if not isinstance(self.fcam, bool):
            raise ValueError(f"EulerNetConfig.fcam must be a bool, got {self.fcam!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"EulerNetConfig.fusion must be one of {FUSIONS}, got {self.fusion!r}")
        for name in ("clip_len", "in_channels", "stem_channels"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"EulerNetConfig.{name} must be a positive int, got {v!r}")
        if self.clip_len < 2:
            raise ValueError(f"EulerNetConfig.clip_len must be >= 2, got {self.clip_len}: EulerNet reads change "
                             "over time, and with one frame the DIIRF coefficients get no gradient (DDP then "
                             "fails on the second step)")
        for name, n in (("block_channels", 3), ("head_channels", 2), ("diirf_b", 3), ("diirf_a", 2)):
            v = getattr(self, name)
            if not isinstance(v, tuple) or len(v) != n:
                raise ValueError(f"EulerNetConfig.{name} must have {n} values, got {v!r}")
        for name in ("block_channels", "head_channels"):
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in getattr(self, name)):
                raise ValueError(f"EulerNetConfig.{name} must be positive ints, got {getattr(self, name)!r}")
        if not all(isinstance(c, (int, float)) and math.isfinite(c) for c in (*self.diirf_b, *self.diirf_a)):
            raise ValueError(f"EulerNetConfig.diirf_b/diirf_a must be finite numbers, got {self.diirf_b}, {self.diirf_a}")
        _check_denominator(float(self.diirf_a[0]), float(self.diirf_a[1]))
        if self.diirf_initial not in DIIRF_INITIAL:
            raise ValueError(f"EulerNetConfig.diirf_initial must be one of {DIIRF_INITIAL}, got {self.diirf_initial!r}")
        if isinstance(self.euler_alpha, int) and not isinstance(self.euler_alpha, bool):
            object.__setattr__(self, "euler_alpha", float(self.euler_alpha))
        if not isinstance(self.euler_alpha, float) or not (0.0 <= self.euler_alpha < 1e4):
            raise ValueError(f"EulerNetConfig.euler_alpha must be a float in [0, 1e4), got {self.euler_alpha!r}")
        if not isinstance(self.euler_grid, int) or isinstance(self.euler_grid, bool) or self.euler_grid < 1:
            raise ValueError(f"EulerNetConfig.euler_grid must be a positive int, got {self.euler_grid!r}")

    def to_dict(self) -> dict:
        """Plain python types only (lists for tuples), safe for ``torch.load(weights_only=True)`` and JSON."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "EulerNetConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown EulerNetConfig fields: {sorted(unknown)}")
        d = dict(d)
        # Checkpoints written before the field existed ran the paper's zero initial state.
        d.setdefault("diirf_initial", "zero")
        return cls(**d)


class EulerNet(nn.Module):
    """EulerNet: clip ``(B, T, 3, S, S)`` normalised float -> per-frame map ``(B, T, S/8, S/8)`` in [0, 1].

    Fig. 2 read as: stem + stage1 ("FCAM x4", pool) -> F_{S/2}; stage2 ("x3", pool) -> F_{S/4};
    stage3 ("x3", pool) -> F_{S/8}, one more FCAM on it; fusion (Residual Pyramid or concat);
    two Conv+FCAM layers ("FCAM x2"); a final Conv3x3 to one channel with a sigmoid.
    At S = 256 these are the paper's F128, F64, F32 and the 32x32 map.
    """

    def __init__(self, cfg: EulerNetConfig | None = None):
        super().__init__()
        cfg = cfg or EulerNetConfig()
        self.cfg = cfg
        w = cfg.width
        kw = dict(fcam=cfg.fcam, diirf_b=cfg.diirf_b, diirf_a=cfg.diirf_a, diirf_initial=cfg.diirf_initial)
        stem = scaled(cfg.stem_channels, w)
        blocks = tuple(scaled(c, w) for c in cfg.block_channels)
        head = tuple(scaled(c, w) for c in cfg.head_channels)
        c_out = blocks[-1]
        self.euler = EulerianInput(cfg.euler_alpha, cfg.euler_grid) if cfg.euler_alpha > 0 else None
        c_in = cfg.in_channels * (2 if self.euler is not None else 1)
        self.stem = ConvUnit(c_in, stem, **kw)
        self.stage1 = Stage(stem, blocks, **kw)
        self.stage2 = Stage(c_out, blocks, **kw)
        self.stage3 = Stage(c_out, blocks, **kw)
        self.pre_fusion_fcam = FCAM(c_out, cfg.diirf_b, cfg.diirf_a, cfg.diirf_initial) if cfg.fcam else None
        self.fusion = ResidualPyramid(c_out) if cfg.fusion == "residual_pyramid" else ConcatFusion()
        self.head1 = ConvUnit(3 * c_out, head[0], **kw)
        self.head2 = ConvUnit(head[0], head[1], **kw)
        self.out = nn.Conv2d(head[1], 1, kernel_size=3, padding=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming (fan_out) for the ReLU convolutions, zero FCAM compressors, BN at identity.

        PyTorch's default conv init gives conv outputs of variance ~0.04 while BN's running variance starts at
        1: through ~14 BN layers in series the eval-mode activations then shrink by orders of magnitude after a
        short run and every input scores sigmoid(bias). Kaiming keeps each layer's output variance near 1, so
        train- and eval-mode statistics agree from the start. Each FCAM compressor starts at zero, so every gate
        starts as a constant 0.5 and learns from the gradient what change over time to let through. Measured on
        the temporal benchmark (docs/model.md): gates that carry time at random from step 0 (a unit-variance
        compressor) multiply 13 layers of features by frame-to-frame noise and buried the faint cue
        (test ACER 17-32 % after 650 steps); zero-started gates reached 0.9 %.
        """
        fcam_convs = {id(m.compress) for m in self.fcam_modules()}
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.out:
                if id(m) in fcam_convs:
                    nn.init.zeros_(m.weight)
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # The output layer starts small: the map begins near sigmoid(0) = 0.5 everywhere, the midpoint of
        # both label values, instead of a random per-pixel offset the loss must first undo.
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 3, S, S)
        cfg = self.cfg
        if x.dim() != 5 or x.shape[2] != cfg.in_channels:
            raise ValueError(f"EulerNet expects (B, T, {cfg.in_channels}, S, S), got {tuple(x.shape)}")
        b, t, c, h, w = x.shape
        if t != cfg.clip_len:
            raise ValueError(f"EulerNet was built for clips of {cfg.clip_len} frames, got T={t}")
        if h != w or h % 8 != 0 or h < 8:
            raise ValueError(f"EulerNet needs square frames with side divisible by 8, got {h}x{w}")
        if self.euler is not None:
            x = self.euler(x)  # (B, T, 6, S, S)
        z = x.reshape(b * t, -1, h, w)  # (B*T, 3 or 6, S, S)
        z = self.stem(z, t)  # (B*T, C0, S, S)
        f128 = self.stage1(z, t)  # (B*T, C, S/2, S/2)
        f64 = self.stage2(f128, t)  # (B*T, C, S/4, S/4)
        f32 = self.stage3(f64, t)  # (B*T, C, S/8, S/8)
        if self.pre_fusion_fcam is not None:
            f32 = self.pre_fusion_fcam(f32, t)
        z = self.fusion(f128, f64, f32)  # (B*T, 3C, S/8, S/8)
        z = self.head2(self.head1(z, t), t)  # (B*T, C2, S/8, S/8)
        m = torch.sigmoid(self.out(z))  # (B*T, 1, S/8, S/8)
        return m.view(b, t, h // 8, w // 8)  # (B, T, S/8, S/8)

    @staticmethod
    def loss(maps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """L2 (mean squared error) between predicted and label maps, both ``(B, T, M, M)``."""
        if maps.shape != labels.shape:
            raise ValueError(f"prediction {tuple(maps.shape)} and label {tuple(labels.shape)} shapes differ")
        return F.mse_loss(maps, labels)

    def diirf_modules(self) -> list[DIIRF]:
        return [m for m in self.modules() if isinstance(m, DIIRF)]

    def fcam_modules(self) -> list[FCAM]:
        return [m for m in self.modules() if isinstance(m, FCAM)]


# --------------------------------------------------------------------------------------------------
# Builder, variants
# --------------------------------------------------------------------------------------------------
def variant_config(variant: str, **overrides) -> EulerNetConfig:
    """The EulerNetConfig of a named variant, with any field overridden (e.g. ``width=0.125``)."""
    known = {f.name for f in fields(EulerNetConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown EulerNetConfig fields in overrides: {sorted(unknown)}; known: {sorted(known)}")
    v = variant_named(variant)
    return EulerNetConfig(**{"fcam": v.fcam, "fusion": v.fusion, **dict(v.overrides), **overrides})


def create_model(variant: str = "baseline", **overrides) -> EulerNet:
    """Build a named variant (``baseline``, ``c1``..``c5``); overrides are EulerNetConfig fields."""
    return EulerNet(variant_config(variant, **overrides))


__all__ = [
    "DIIRF",
    "FCAM",
    "EulerianInput",
    "DIIRF_INITIAL",
    "ConvUnit",
    "Stage",
    "ResidualPyramid",
    "ConcatFusion",
    "MAX_POLE_RADIUS",
    "EulerNetConfig",
    "EulerNet",
    "Variant",
    "VARIANTS",
    "TABLE_I",
    "TEST_WIDTH",
    "FUSIONS",
    "LABEL_TYPES",
    "create_model",
    "variant_config",
    "variant_label_type",
    "scaled",
]
