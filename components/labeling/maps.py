"""The three per-frame label maps (DESIGN §3), all float32 (out_size, out_size) in [0, 1], zeros for attacks.

- face location map: the face-contour polygon (jaw 0..16 closed over the brows 26..17) filled with 1, rasterised
  at ``supersample``x resolution and area-averaged down, so boundary pixels hold their covered fraction;
- binary mask: the whole crop 1 (DeepPixBiS style);
- depth map: a template 3D face fitted to the 68 points (or the backend's 3D landmarks), interpolated inside the
  landmarks' convex hull and normalised to [0, 1].
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from components.face.landmarks import JAW, NOSE_TIP

CONTOUR = JAW + list(range(26, 16, -1))  # jaw left->right, then brows right->left: one closed polygon


def _check(points: np.ndarray, crop_size: int, out_size: int) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[0] != 68 or pts.shape[1] < 2:
        raise ValueError(f"expected 68 landmarks (68, 2), got {pts.shape}")
    if crop_size < 1 or out_size < 1:
        raise ValueError(f"crop_size and out_size must be >= 1, got {crop_size}, {out_size}")
    return pts


def _area_downsample(img: np.ndarray, factor: int) -> np.ndarray:
    n = img.shape[0] // factor
    return img.reshape(n, factor, n, factor).mean(axis=(1, 3))


def location_map(points_in_crop, crop_size: int, out_size: int = 32, live: bool = True,
                 supersample: int = 8) -> np.ndarray:
    """Face location map (out_size, out_size): ~1 inside the contour polygon, ~0 outside, fractional on the edge."""
    pts = _check(points_in_crop, crop_size, out_size)
    if not live:
        return np.zeros((out_size, out_size), np.float32)
    from skimage.draw import polygon

    hi = out_size * supersample
    # Continuous crop coordinates (pixel i spans [i, i+1)) -> high-res grid where pixel centres are integers.
    # skimage fills the pixels whose centre lies inside the polygon, so coverage is unbiased on every side
    # (cv2.fillPoly also fills pixels within half a pixel right/below of an edge).
    poly = pts[CONTOUR, :2] * (hi / crop_size) - 0.5
    canvas = np.zeros((hi, hi), np.float32)
    rr, cc = polygon(poly[:, 1], poly[:, 0], shape=canvas.shape)
    canvas[rr, cc] = 1.0
    return _area_downsample(canvas, supersample).astype(np.float32)


def binary_mask(out_size: int = 32, live: bool = True) -> np.ndarray:
    """DeepPixBiS-style label: the whole map 1 for live, 0 for attack."""
    return np.full((out_size, out_size), 1.0 if live else 0.0, np.float32)


@lru_cache(maxsize=1)
def template_face_3d() -> np.ndarray:
    """A 68-point template face (68, 3): x right, y down, z towards the camera, inter-ocular distance ~1.

    Built from a few measurements of an average adult face (eye spacing, nose length and protrusion, mouth and jaw
    width) rather than shipped data, so it carries no dataset licence. Only its shape matters: it is fitted to the
    detected points, and depth is normalised per frame.
    """
    p = np.zeros((68, 3))
    # Jaw 0..16: half an ellipse from ear level (y=0.1) down to the chin (y=1.55); z rises from the ears (0) to the chin.
    t = np.linspace(0.0, np.pi, 17)
    p[0:17, 0] = -1.05 * np.cos(t)
    p[0:17, 1] = 0.1 + 1.45 * np.sin(t) ** 1.2
    p[0:17, 2] = 0.55 * np.sin(t) ** 0.8
    # Brows 17..21 (image left) and 22..26 (mirrored), slight arch.
    bx = np.linspace(-0.95, -0.2, 5)
    p[17:22, 0], p[22:27, 0] = bx, -bx[::-1]
    by = -0.35 - 0.1 * np.sin(np.linspace(0.2, np.pi - 0.2, 5))
    p[17:22, 1], p[22:27, 1] = by, by[::-1]
    p[17:22, 2] = [0.35, 0.5, 0.6, 0.68, 0.72]
    p[22:27, 2] = p[17:22, 2][::-1]
    # Nose bridge 27..30 down to the tip (the most protruding point), nostrils 31..35.
    p[27:31, 0] = 0.0
    p[27:31, 1] = np.linspace(-0.1, 0.55, 4)
    p[27:31, 2] = [0.8, 0.9, 1.02, 1.15]
    p[31:36, 0] = np.linspace(-0.3, 0.3, 5)
    p[31:36, 1] = [0.7, 0.73, 0.75, 0.73, 0.7]
    p[31:36, 2] = [0.8, 0.88, 0.95, 0.88, 0.8]
    # Eyes 36..41 and 42..47: six points clockwise from each eye's image-left corner; outer corners sit deeper.
    a = np.array([np.pi, 2 * np.pi / 3, np.pi / 3, 0.0, -np.pi / 3, -2 * np.pi / 3])
    for start, cx in ((36, -0.5), (42, 0.5)):
        p[start:start + 6, 0] = cx + 0.22 * np.cos(a)
        p[start:start + 6, 1] = -0.08 * np.sin(a)
        p[start:start + 6, 2] = 0.6
    p[[36, 45], 2] = 0.48
    # Mouth: outer 48..59 and inner 60..67 contours, corners at +-0.45 (outer) and +-0.38 (inner).
    u = np.pi - np.linspace(0, 2 * np.pi, 12, endpoint=False)
    p[48:60, 0] = 0.45 * np.cos(u)
    p[48:60, 1] = 1.08 - 0.14 * np.sin(u)
    p[48:60, 2] = 0.8 - 0.15 * np.cos(u) ** 2
    v = np.pi - np.linspace(0, 2 * np.pi, 8, endpoint=False)
    p[60:68, 0] = 0.38 * np.cos(v)
    p[60:68, 1] = 1.08 - 0.05 * np.sin(v)
    p[60:68, 2] = 0.78 - 0.12 * np.cos(v) ** 2
    p.setflags(write=False)
    return p


def fit_template_depth(points2d: np.ndarray, template: np.ndarray | None = None) -> np.ndarray:
    """Per-landmark depth (68,) of the template posed to match ``points2d`` (68, 2).

    Fits a weak-perspective (affine) camera ``points2d ~ A @ X + t`` by least squares, takes the nearest scaled
    rotation from A's two rows, and returns the template's depth along that rotation's viewing axis; so a turned
    head gets the depth of a turned face, in the same pixel units as ``points2d``.
    """
    X = template_face_3d() if template is None else np.asarray(template, np.float64)
    pts = np.asarray(points2d, np.float64)[:, :2]
    Xh = np.hstack([X, np.ones((len(X), 1))])  # (68, 4)
    P, *_ = np.linalg.lstsq(Xh, pts, rcond=None)  # (4, 2)
    A = P[:3].T  # (2, 3)
    s = (np.linalg.norm(A[0]) + np.linalg.norm(A[1])) / 2.0
    u, _, vt = np.linalg.svd(A / max(s, 1e-9), full_matrices=False)
    r12 = u @ vt  # (2, 3) orthonormal rows nearest A/s
    r3 = np.cross(r12[0], r12[1])
    # r12 are the image x/y axes in template coordinates; their cross product is the template's "towards the
    # camera" axis for a frontal fit (template x right, y down, z towards the camera).
    z = (X @ r3) * s
    if z[NOSE_TIP] < z[JAW].mean():  # a mirror fit (reflection) is possible for degenerate points; keep nose up
        z = -z
    return z


def depth_map(points_in_crop, crop_size: int, out_size: int = 32, live: bool = True,
              points3d: np.ndarray | None = None, supersample: int = 4) -> np.ndarray:
    """Depth map (out_size, out_size): face depth in [0, 1] inside the landmarks' hull, 0 outside and for attacks.

    ``points3d`` (68, 3) from a 3D backend is used when given (its z, oriented so the nose tip is nearest);
    otherwise the template face is fitted to the 2D points.
    """
    pts = _check(points_in_crop, crop_size, out_size)
    if not live:
        return np.zeros((out_size, out_size), np.float32)
    from scipy.interpolate import griddata

    if points3d is not None:
        z = np.asarray(points3d, np.float64)[:, 2]
        if z[NOSE_TIP] < z[JAW].mean():
            z = -z
    else:
        z = fit_template_depth(pts[:, :2])
    z = (z - z.min()) / max(z.max() - z.min(), 1e-9)
    hi = out_size * supersample
    xy = pts[:, :2] * (hi / crop_size)
    g = np.arange(hi) + 0.5  # pixel centres in high-res continuous coordinates
    gx, gy = np.meshgrid(g, g)
    try:
        d = griddata(xy, z, (gx, gy), method="linear", fill_value=0.0)
    except Exception:  # scipy's Qhull raises on collinear/degenerate points: no area, no depth
        return np.zeros((out_size, out_size), np.float32)
    return np.clip(_area_downsample(d, supersample), 0.0, 1.0).astype(np.float32)
