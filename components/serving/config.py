"""The ``serve:`` section of params.yaml, importable without Ray or FastAPI (``eulernet predict`` uses it)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .inputs import Limits


@dataclasses.dataclass
class ServeConfig:
    """The ``serve:`` section of params.yaml (deployment sizing lives in infra/serve_config.yaml)."""

    model_name: str = "eulernet"
    alias: str = "champion"
    host: str = "127.0.0.1"
    port: int = 8000
    route_prefix: str = "/"
    config_file: str = "infra/serve_config.yaml"
    reload_interval_s: float = 10.0
    max_batch_size: int = 8            # requests merged into one forward pass
    batch_wait_timeout_s: float = 0.005
    max_clips: int = 4                 # clips scored per request (spread over the video)
    preprocess_threads: int = 2
    torch_threads: int = 1             # intra-op threads of the forward pass; >1 only on dedicated cores
    device: str = "cpu"                # "cuda" on GPU replicas (add num_gpus to ray_actor_options)
    max_upload_bytes: int = 20_000_000
    max_frames: int = 300
    max_resolution: int = 1920

    def __post_init__(self) -> None:
        if not self.model_name:
            raise ValueError("model_name must be set")
        if not (0 < self.port < 65536):
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if not self.route_prefix.startswith("/"):
            raise ValueError(f"route_prefix must start with '/', got {self.route_prefix!r}")
        if self.reload_interval_s <= 0:
            raise ValueError(f"reload_interval_s must be > 0, got {self.reload_interval_s}")
        for name in ("max_batch_size", "max_clips", "preprocess_threads", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_wait_timeout_s < 0:
            raise ValueError(f"batch_wait_timeout_s must be >= 0, got {self.batch_wait_timeout_s}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        self.limits()  # validates the limit fields with their own messages

    def limits(self) -> Limits:
        return Limits(max_upload_bytes=self.max_upload_bytes, max_frames=self.max_frames,
                      max_resolution=self.max_resolution,
                      max_json_frames_bytes=self.max_upload_bytes)

    def user_config(self) -> dict[str, Any]:
        """The knobs a running deployment changes live (``reconfigure``)."""
        return {name: getattr(self, name) for name in USER_CONFIG_KEYS}


# Live knobs (Serve user_config) and replica arguments (Serve app args): in a Serve config file they must hold
# the values params.yaml `serve:` holds, which `disagreements` checks (eulernet serve refuses to start otherwise).
USER_CONFIG_KEYS = ("max_batch_size", "batch_wait_timeout_s", "reload_interval_s", "max_clips")
APP_ARG_KEYS = ("model_name", "alias", "max_upload_bytes", "max_frames", "max_resolution", "preprocess_threads",
                "torch_threads", "device")


@dataclasses.dataclass(frozen=True)
class ServeFile:
    """One application of a Serve config file (what ``serve deploy`` reads), validated by Ray's own schema."""

    http_options: dict[str, Any]
    args: dict[str, Any]
    deployment: dict[str, Any]  # LivenessService options, user_config included

    @property
    def user_config(self) -> dict[str, Any]:
        return dict(self.deployment.get("user_config") or {})


def read_serve_config(path_or_text: str | Path, app_name: str = "eulernet") -> ServeFile:
    """Parse a Serve config file (or its YAML text, as embedded in a RayService) with Ray's schema."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    text = path_or_text if isinstance(path_or_text, str) and "\n" in path_or_text else Path(path_or_text).read_text()
    schema = ServeDeploySchema.model_validate(yaml.safe_load(text))
    apps = [a for a in schema.applications if a.name == app_name]
    if not apps:
        raise ValueError(f"{path_or_text if len(str(path_or_text)) < 200 else 'serve config'}: "
                         f"no application named {app_name!r}")
    deployments = [d for d in apps[0].deployments or [] if d.name == "LivenessService"]
    opts = deployments[0].model_dump(exclude_unset=True, exclude={"name"}) if deployments else {}
    return ServeFile(schema.http_options.model_dump(exclude_unset=True), dict(apps[0].args or {}), opts)


def disagreements(cfg: ServeConfig, serve_file: ServeFile, where: str = "serve config") -> list[str]:
    """Every value a Serve config file sets differently from params.yaml ``serve:`` (empty when they agree).

    Keys the file leaves out take params' value at run time, so only values that are present are compared.
    ``http_options`` are not compared: where the proxy binds belongs to the place of deployment (loopback on a
    laptop, 0.0.0.0 inside a pod)."""
    out = []
    for section, values, keys in (("args", serve_file.args, APP_ARG_KEYS),
                                  ("user_config", serve_file.user_config, USER_CONFIG_KEYS)):
        unknown = sorted(set(values) - set(keys) - {"tracking_uri", "checkpoint"})
        if unknown:
            out.append(f"{where} {section} has keys params.yaml serve: does not own: {unknown}")
        for key in keys:
            if key in values and values[key] != getattr(cfg, key):
                out.append(f"{where} {section}.{key} = {values[key]!r} but params.yaml serve.{key} = "
                           f"{getattr(cfg, key)!r}")
    return out
