"""`eulernet predict VIDEO`: score one video with a checkpoint or a registered model; prints JSON."""
from __future__ import annotations

import argparse
import json
import os

from flows.args import params_option
from flows.errors import StageError

HELP = "score one video file with a checkpoint or a registered model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="video file (mp4, avi, ...)")
    params_option(parser, "serve", "for the limits")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", default=None, help="Predictor checkpoint file")
    src.add_argument("--model", default=None, help="registered model URI, e.g. models:/eulernet@champion "
                                                   "(default when neither --checkpoint nor --reference)")
    src.add_argument("--reference", action="store_true",
                     help="the shipped reference model (models/reference/, trained on real recordings; no registry)")
    parser.add_argument("--max-clips", type=int, default=None, help="clips to score (default: checkpoint's)")


def _parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    if not uri.startswith("models:/"):
        raise ValueError(f"--model must look like models:/<name>@<alias> or models:/<name>/<version>, got {uri!r}")
    rest = uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, alias, None
    name, _, version = rest.partition("/")
    return name, None, version or None


def load_predictor(checkpoint: str | None, model_uri: str):
    """``(Predictor, info)`` from a checkpoint file, else from a registered model URI (the one loading road for
    every command that scores with a model)."""
    if checkpoint:
        from components.inference.predictor import Predictor

        return Predictor.from_checkpoint(checkpoint), {"checkpoint": checkpoint}
    from components.registry.load import load_champion, load_version
    from components.runtime import use_mlflow

    use_mlflow()
    name, alias, version = _parse_model_uri(model_uri)
    predictor, info = load_version(name, version) if version else load_champion(name, alias or "champion")
    return predictor, {"name": info["name"], "version": info["version"]}


def run(args) -> int:
    from mlflow.exceptions import MlflowException

    from components.config import ConfigError, load_section
    from components.data.video import VideoError
    from components.face.clips import LabelingError
    from components.registry.versions import RegistryError
    from components.serving.config import ServeConfig

    try:
        cfg = load_section(ServeConfig, "serve", args.params) if os.path.isfile(args.params) else ServeConfig()
        if args.reference:
            from components.runtime import reference_checkpoint

            args.checkpoint = reference_checkpoint()
        predictor, info = load_predictor(args.checkpoint, args.model or f"models:/{cfg.model_name}@champion")
        result = predictor.predict_file(args.video, max_frames=cfg.max_frames, max_clips=args.max_clips)
    except (ConfigError, ValueError, VideoError, LabelingError, FileNotFoundError, RegistryError,
            MlflowException) as exc:
        raise StageError(exc) from None
    print(json.dumps({"video": args.video, "model": info, **result}, indent=2))
    return 0
