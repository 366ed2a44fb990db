"""The ``serve:`` section of params.yaml, importable without Ray or FastAPI (``eulernet predict`` uses it)."""
from __future__ import annotations

import dataclasses
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
    work_side: int = 480

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
                      max_resolution=self.max_resolution, work_side=self.work_side,
                      max_json_frames_bytes=self.max_upload_bytes)

    def user_config(self) -> dict[str, Any]:
        return {"max_batch_size": self.max_batch_size, "batch_wait_timeout_s": self.batch_wait_timeout_s,
                "reload_interval_s": self.reload_interval_s, "max_clips": self.max_clips}
