"""Face detection + 68 landmarks (iBUG 300-W scheme) behind one small interface.

Three backends:
- ``DlibBackend`` — the offline default: dlib's HOG frontal-face detector and the 68-point shape predictor shipped
  in the ``face-recognition-models`` package. Works on a fresh machine with no network.
- ``YuNetBackend`` — YuNet boxes (vendored ONNX, run by OpenCV, ~10x faster than HOG) + dlib's 68 points.
- ``FaceAlignmentBackend`` — face-alignment 1.5 (FAN), 2D or 3D landmarks. Its weights are fetched by the library
  into ``$TORCH_HOME/hub/checkpoints`` on first use; a file already there is used as is.

Heavy imports (dlib, torch, face_alignment) happen inside the backends so importing this module is cheap.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

N_POINTS = 68
# iBUG 68-point index groups (0-based), shared by crop/maps.
JAW = list(range(0, 17))
BROWS = list(range(17, 27))
NOSE = list(range(27, 36))
RIGHT_EYE = list(range(36, 42))  # the subject's right eye = left side of the image
LEFT_EYE = list(range(42, 48))
MOUTH = list(range(48, 68))
NOSE_TIP = 30

# face-alignment's hub checkpoint file names (its models_urls); kept here so docs/tests name the same files.
FA_WEIGHT_FILES = {
    "s3fd": "s3fd-619a316812.pth",
    "2d": "2DFAN4-11f355bf06.pth.tar",
    "3d": "3DFAN4-7835d9f11d.pth.tar",
    "depth": "depth-2a464da4ea.pth.tar",
}


@dataclass
class Face:
    """One detected face in image pixel coordinates (x right, y down)."""

    box: tuple[float, float, float, float]  # (x0, y0, x1, y1)
    points: np.ndarray  # (68, 2) float32
    points3d: np.ndarray | None = None  # (68, 3) float32, z = backend depth, when the backend gives it
    score: float = 1.0

    def __post_init__(self):
        self.box = tuple(float(v) for v in self.box)
        self.points = np.asarray(self.points, dtype=np.float32).reshape(N_POINTS, 2)
        if self.points3d is not None:
            self.points3d = np.asarray(self.points3d, dtype=np.float32).reshape(N_POINTS, 3)
        self.score = float(self.score)

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


@runtime_checkable
class LandmarkBackend(Protocol):
    name: str

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 frame (H, W, 3), largest first."""
        ...


def _check_frame(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frame must be an RGB uint8 array (H, W, 3), got "
                         f"{getattr(frame, 'dtype', type(frame))} {getattr(frame, 'shape', '')}")
    # dlib and torch.from_numpy need C-contiguous memory; decoded/cropped frames are often views.
    return np.ascontiguousarray(frame)


def _largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.area, reverse=True)


def dlib_68_model_path() -> str:
    """Path of ``shape_predictor_68_face_landmarks.dat`` from the face-recognition-models package.

    The package's own helper imports ``pkg_resources``, which recent setuptools no longer ships; locating the
    package directory without importing it works with every setuptools.
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its pkg_resources deprecation warning, once per process
            import face_recognition_models

        return face_recognition_models.pose_predictor_model_location()
    except ImportError:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("face-recognition-models is not installed; `pip install face-recognition-models` "
                              "(it ships dlib's 68-point model) or pass model_path=") from None
        path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the face-recognition-models install") from None
        return str(path)


def _dlib_points(predictor, dlib, img: np.ndarray, boxes, scores=None) -> list[Face]:
    """dlib's 68-point shape predictor on each box (x0, y0, x1, y1): the landmarks of both dlib-based backends."""
    faces = []
    for i, b in enumerate(boxes):
        x0, y0, x1, y1 = (int(round(float(v))) for v in b[:4])
        shape = predictor(img, dlib.rectangle(x0, y0, x1, y1))
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)  # (68, 2)
        faces.append(Face((x0, y0, x1, y1), pts, None, 1.0 if scores is None else scores[i]))
    return _largest_first(faces)


class DlibBackend:
    """dlib HOG detector + 68-point shape predictor; CPU, offline, ~30 ms per 256 px frame.

    ``upsample=1`` finds faces down to ~40 px; ``min_score`` drops weak HOG hits (0.3 rejects the false
    "faces" dlib reports on textures and patches at ~0.1).
    """

    name = "dlib"

    def __init__(self, upsample: int = 1, min_score: float = 0.3, model_path: str | None = None):
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        import dlib

        self.upsample = int(upsample)
        self.min_score = float(min_score)
        self.model_path = model_path or dlib_68_model_path()
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(self.model_path)
        self._dlib = dlib

    def landmarks_for_boxes(self, frame_rgb: np.ndarray, boxes, scores=None) -> list[Face]:
        """68 points for given boxes (x0, y0, x1, y1); skips detection."""
        return _dlib_points(self._predictor, self._dlib, _check_frame(frame_rgb), boxes, scores)

    def detect_boxes(self, frame_rgb: np.ndarray, upsample: int | None = None) -> list[tuple[tuple, float]]:
        """``[(box, score)]`` from the HOG detector alone; ``upsample`` overrides the configured one (the
        tracker searches a window already rescaled to the face, where upsampling would only cost time)."""
        img = _check_frame(frame_rgb)
        up = self.upsample if upsample is None else int(upsample)
        rects, scores, _ = self._detector.run(img, up, self.min_score)
        return [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        img = _check_frame(frame_rgb)
        found = self.detect_boxes(img)
        return self.landmarks_for_boxes(img, [b for b, _ in found], [s for _, s in found])

    def __reduce__(self):
        # dlib objects do not pickle; rebuild from the arguments (Ray ships backends to workers this way).
        return (DlibBackend, (self.upsample, self.min_score, self.model_path))


class FaceAlignmentBackend:
    """face-alignment 1.5 FAN landmarks, 2D or 3D (``landmarks="3d"`` also fills ``Face.points3d``).

    Weights come from ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``); face-alignment
    downloads them there on first use and never again. ``face_detector`` is passed to face-alignment:
    ``"sfd"`` (its default, S3FD weights) or ``"dlib"`` (dlib's HOG detector on CPU, no weights).
    ``compile=False`` because torch.compile costs minutes on CPU for no gain at these batch sizes.
    """

    name = "face_alignment"

    def __init__(self, landmarks: str = "2d", device: str = "cpu", face_detector: str = "sfd",
                 flip_input: bool = False, min_score: float = 0.5, torch_home: str | None = None):
        if landmarks not in ("2d", "3d"):
            raise ValueError(f"landmarks must be '2d' or '3d', got {landmarks!r}")
        self._args = (landmarks, device, face_detector, flip_input, min_score, torch_home)
        if torch_home is not None:
            # torch.hub reads TORCH_HOME when it resolves the checkpoint folder.
            os.environ["TORCH_HOME"] = str(torch_home)
        import face_alignment

        kind = face_alignment.LandmarksType.THREE_D if landmarks == "3d" else face_alignment.LandmarksType.TWO_D
        self.landmarks = landmarks
        self.min_score = float(min_score)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its "dlib detector is deprecated" notice; the choice is deliberate
            self._fa = face_alignment.FaceAlignment(kind, device=device, face_detector=face_detector,
                                                    flip_input=flip_input, compile=False, verbose=False)

    def landmarks_for_boxes(self, frame_rgb: np.ndarray, boxes, scores=None) -> list[Face]:
        """FAN landmarks for given boxes (x0, y0, x1, y1[, score]); skips the face detector."""
        img = _check_frame(frame_rgb)
        # float64: face-alignment 1.5 writes box-derived numpy scalars into torch tensors, which rejects float32.
        boxes = [np.asarray(b, dtype=np.float64)[:4] for b in boxes]
        if not boxes:
            return []
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pts = self._fa.get_landmarks_from_image(img, detected_faces=boxes)
        faces = []
        for i, (b, p) in enumerate(zip(boxes, pts or [])):
            p = np.asarray(p, dtype=np.float32)  # (68, 2) or (68, 3)
            faces.append(Face(tuple(b), p[:, :2], p if p.shape[1] == 3 else None,
                              1.0 if scores is None else scores[i]))
        return _largest_first(faces)

    def detect_boxes(self, frame_rgb: np.ndarray, upsample: int | None = None) -> list[tuple[tuple, float]]:
        """``[(box, score)]`` from face-alignment's detector alone (``upsample`` is dlib's knob; ignored)."""
        img = _check_frame(frame_rgb)
        found = []
        for d in self._fa.face_detector.detect_from_image(img.copy()):
            d = list(d)
            score = float(d[4]) if len(d) > 4 else 1.0  # the dlib detector gives no score
            if score >= self.min_score:
                found.append((tuple(float(v) for v in d[:4]), score))
        return found

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        img = _check_frame(frame_rgb)
        found = self.detect_boxes(img)
        return self.landmarks_for_boxes(img, [b for b, _ in found], [s for _, s in found])

    def __reduce__(self):
        return (FaceAlignmentBackend, self._args)


YUNET_MODEL = Path(__file__).with_name("yunet") / "yunet_s_640_640.onnx"  # vendored, Apache-2.0 (yunet/SOURCE.md)
# dlib's 68-point predictor was trained on boxes from dlib's HOG detector; YuNet's boxes run taller (they include
# the forehead) and narrower. Measured on 179 frames where both found the face (40 real clips, 30 sample videos;
# the calibration is re-measured by benchmarks/face_agreement.py --yunet): the HOG box centre lies 0.052 box heights
# below YuNet's, is 1.097x as wide and 0.803x as tall (medians; spreads 0.04-0.09). YuNet boxes are mapped so.
YUNET_TO_DLIB = (0.0, 0.052, 1.097, 0.803)  # (centre dx / w, centre dy / h, width ratio, height ratio)


class YuNetBackend:
    """YuNet (a 230 KB ONNX face detector, run by OpenCV) for boxes, dlib's 68-point predictor for the landmarks.

    About 4 ms per frame at ``detect_side`` 320 against dlib HOG's ~43 ms at 480 px (measured here, one core); it
    also finds faces HOG misses (turned, small, dim). Boxes are mapped to the HOG convention the 68-point model
    was trained on (:data:`YUNET_TO_DLIB`), so crops, tracking and label maps read them as before.
    """

    name = "yunet"

    def __init__(self, score_threshold: float = 0.7, detect_side: int = 320, model_path: str | None = None,
                 shape_model_path: str | None = None):
        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in (0, 1), got {score_threshold}")
        if detect_side < 64:
            raise ValueError(f"detect_side must be >= 64, got {detect_side}")
        import cv2
        import dlib

        self.score_threshold = float(score_threshold)
        self.detect_side = int(detect_side)
        self.model_path = str(model_path or YUNET_MODEL)
        self.shape_model_path = shape_model_path or dlib_68_model_path()
        self._detector = cv2.FaceDetectorYN.create(self.model_path, "", (detect_side, detect_side),
                                                   self.score_threshold, 0.3, 50)
        self._predictor = dlib.shape_predictor(self.shape_model_path)
        self._dlib, self._cv2 = dlib, cv2

    def detect_boxes(self, frame_rgb: np.ndarray, upsample: int | None = None) -> list[tuple[tuple, float]]:
        """``[(box, score)]`` in the HOG box convention; ``upsample`` (dlib's knob) is ignored: YuNet runs the
        frame at ``detect_side`` whatever its size."""
        cv2 = self._cv2
        img = _check_frame(frame_rgb)
        h, w = img.shape[:2]
        s = min(1.0, self.detect_side / max(h, w))
        small = img if s == 1.0 else cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                                                interpolation=cv2.INTER_AREA)
        self._detector.setInputSize((small.shape[1], small.shape[0]))
        _, faces = self._detector.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        dx, dy, rw, rh = YUNET_TO_DLIB
        out = []
        for f in [] if faces is None else faces:
            fx, fy, fw, fh = (float(v) / s for v in f[:4])
            cx, cy = fx + fw * (0.5 + dx), fy + fh * (0.5 + dy)
            bw, bh = fw * rw, fh * rh
            out.append(((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), float(f[-1])))
        return out

    def landmarks_for_boxes(self, frame_rgb: np.ndarray, boxes, scores=None) -> list[Face]:
        """68 points for given boxes (x0, y0, x1, y1), from dlib's shape predictor."""
        return _dlib_points(self._predictor, self._dlib, _check_frame(frame_rgb), boxes, scores)

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        img = _check_frame(frame_rgb)
        found = self.detect_boxes(img)
        return self.landmarks_for_boxes(img, [b for b, _ in found], [s for _, s in found])

    def __reduce__(self):
        # OpenCV and dlib objects do not pickle; rebuild from the arguments (Ray ships backends this way).
        return (YuNetBackend, (self.score_threshold, self.detect_side, self.model_path, self.shape_model_path))


BACKENDS = {"dlib": DlibBackend, "face_alignment": FaceAlignmentBackend, "yunet": YuNetBackend}


def make_backend(name: str, **kw: Any) -> LandmarkBackend:
    """Build a backend by name (``"dlib"`` or ``"face_alignment"``) with its keyword options."""
    if name not in BACKENDS:
        raise ValueError(f"unknown landmark backend {name!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name](**kw)
