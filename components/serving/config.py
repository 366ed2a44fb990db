"""The ``serve:`` section of params.yaml, importable without Ray or FastAPI (``eulernet predict`` uses it)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .budget import budget_floor
from .inputs import MAX_DECODE_THREADS, Limits


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
    torch_threads: int = 1             # torch intra-op threads of the forward pass; >1 only on dedicated cores
    # ONNX Runtime intra-op threads. Its workers sleep rather than spin, so with the other core busy 2 threads
    # cost the same wall time as 1 (torch's OpenMP barrier: 1.7x slower) and halve a lone request's model stage.
    onnx_threads: int = 2
    device: str = "cpu"                # "cuda" on GPU replicas: each replica then reserves num_gpus
    num_gpus: float | None = None      # GPUs per replica (fractions share one); None: 1 on cuda, 0 on cpu
    engine: str = "auto"               # runs the network: auto (ONNX Runtime on the registered graph if any) | torch | onnx
    # A 15-s 1080p30 phone selfie at 8-17 Mb/s is 15-32 MB: such a clip must be scored, not refused.
    max_upload_bytes: int = 40_000_000
    # Upload bytes one replica holds at once (a reservation per request, before its body is read): past it, 503
    # with Retry-After. Default: five uploads at the limit.
    max_inflight_upload_bytes: int = 200_000_000
    max_frames: int = 300
    max_resolution: int = 1920
    max_seconds: float = 10.0          # a longer video is scored on its first max_seconds (at most max_frames)
    decode_workers: int = 2            # decoder processes per replica (a crash there fails one request)
    # FFmpeg threads per decode. Served at c=1, 2 took the real clips' decode stage from 210 to 186 ms p50, c=4
    # unchanged (docs/serving.md, "Decoder threads"): requests in parallel share the cores either way.
    decode_threads: int = 2
    decode_memory_mb: int = 512        # address space each decoder may add to its start-up size (RLIMIT_AS)
    decode_deadline_s: float = 10.0    # a decode running longer is killed: 503 decode_timeout
    rate_limit_per_s: float = 5.0      # scoring requests per second per API key per replica; 0: no limit
    rate_limit_burst: int = 20         # requests a key may send at once before the rate applies
    health_timeout_s: float = 20.0     # a thread pool that runs no canary task within this is wedged (unhealthy)
    # Replicas refuse to start without an API key (EULERNET_API_KEY / _FILE) unless this says, explicitly, that
    # anyone who reaches the port may score (a laptop on 127.0.0.1; `eulernet serve --allow-anonymous`).
    allow_anonymous: bool = False
    # Where a replica keeps a copy of the last registered version it verified and served, to serve through a
    # registry outage at (re)start; "" turns it off. One folder per tracking store and alias.
    last_known_good_dir: str = "~/.cache/eulernet/serving"
    # One JSON line of metadata per scored request (never pixels), for `eulernet monitor`; "" turns it off. Each
    # replica writes its own file here, rotated at request_log_max_mb keeping request_log_backups old files.
    request_log_dir: str = "logs/requests"
    request_log_max_mb: float = 20.0
    request_log_backups: int = 5

    def __post_init__(self) -> None:
        if not self.model_name:
            raise ValueError("model_name must be set")
        if not (0 < self.port < 65536):
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if not self.route_prefix.startswith("/"):
            raise ValueError(f"route_prefix must start with '/', got {self.route_prefix!r}")
        if self.reload_interval_s <= 0:
            raise ValueError(f"reload_interval_s must be > 0, got {self.reload_interval_s}")
        for name in ("max_batch_size", "max_clips", "preprocess_threads", "torch_threads", "onnx_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.decode_workers < 1:
            raise ValueError(f"decode_workers must be >= 1, got {self.decode_workers}")
        if not 1 <= self.decode_threads <= MAX_DECODE_THREADS:
            raise ValueError(f"decode_threads must be within 1..{MAX_DECODE_THREADS}, got {self.decode_threads}")
        if self.decode_memory_mb < 64:
            raise ValueError(f"decode_memory_mb must be >= 64, got {self.decode_memory_mb}")
        if not self.decode_deadline_s > 0:
            raise ValueError(f"decode_deadline_s must be > 0, got {self.decode_deadline_s}")
        if self.batch_wait_timeout_s < 0:
            raise ValueError(f"batch_wait_timeout_s must be >= 0, got {self.batch_wait_timeout_s}")
        if self.rate_limit_per_s < 0:
            raise ValueError(f"rate_limit_per_s must be >= 0 (0: no limit), got {self.rate_limit_per_s}")
        if self.rate_limit_burst < 1:
            raise ValueError(f"rate_limit_burst must be >= 1, got {self.rate_limit_burst}")
        if self.health_timeout_s <= 0:
            raise ValueError(f"health_timeout_s must be > 0, got {self.health_timeout_s}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}, got {self.engine!r}")
        if self.num_gpus is not None:
            if not (self.num_gpus >= 0):
                raise ValueError(f"num_gpus must be >= 0, got {self.num_gpus}")
            if self.device == "cpu" and self.num_gpus > 0:
                raise ValueError(f"num_gpus={self.num_gpus} reserves GPUs a device: cpu replica never uses; "
                                 "set device: cuda or num_gpus: 0")
            if self.device != "cpu" and self.num_gpus == 0:
                raise ValueError(f"device: {self.device} needs num_gpus > 0 (e.g. 1, or 0.5 to put two replicas on "
                                 "one GPU): a replica without a GPU of its own lands on GPU 0 with every other one")
            if self.num_gpus > 1 and self.num_gpus != int(self.num_gpus):
                raise ValueError(f"num_gpus above 1 must be a whole number, got {self.num_gpus}")
        if not self.request_log_max_mb > 0 or self.request_log_backups < 0:
            raise ValueError(f"request_log_max_mb must be > 0 and request_log_backups >= 0, got "
                             f"{self.request_log_max_mb}, {self.request_log_backups}")
        if self.max_inflight_upload_bytes < budget_floor(self.max_upload_bytes):
            raise ValueError(f"max_inflight_upload_bytes ({self.max_inflight_upload_bytes}) must be >= "
                             f"{budget_floor(self.max_upload_bytes)}: one multipart upload at max_upload_bytes "
                             f"({self.max_upload_bytes}) is held three times at its peak and must fit")
        self.limits()  # validates the limit fields with their own messages

    @property
    def gpus(self) -> float:
        """GPUs each replica reserves (``ray_actor_options.num_gpus``): ``num_gpus``, else 1 on cuda, 0 on cpu."""
        if self.num_gpus is not None:
            return float(self.num_gpus)
        return 0.0 if self.device == "cpu" else 1.0

    def limits(self) -> Limits:
        return Limits(max_upload_bytes=self.max_upload_bytes, max_frames=self.max_frames,
                      max_resolution=self.max_resolution,
                      max_json_frames_bytes=self.max_upload_bytes, max_seconds=self.max_seconds)

    def decode_options(self) -> dict[str, Any]:
        """``decode.DecodePool`` arguments for each replica."""
        return {"workers": self.decode_workers, "memory_mb": self.decode_memory_mb,
                "deadline_s": self.decode_deadline_s, "threads": self.decode_threads}

    def user_config(self) -> dict[str, Any]:
        """The knobs a running deployment changes live (``reconfigure``)."""
        return {name: getattr(self, name) for name in USER_CONFIG_KEYS}


# Live knobs (Serve user_config) and replica arguments (Serve app args): in a Serve config file they must hold
# the values params.yaml `serve:` holds, which `disagreements` checks (eulernet serve refuses to start otherwise).
ENGINES = ("auto", "torch", "onnx")
USER_CONFIG_KEYS = ("max_batch_size", "batch_wait_timeout_s", "reload_interval_s", "max_clips")
APP_ARG_KEYS = ("model_name", "alias", "max_upload_bytes", "max_frames", "max_resolution", "preprocess_threads",
                "torch_threads", "onnx_threads", "device", "num_gpus", "engine", "max_seconds", "decode_workers", "decode_threads", "decode_memory_mb",
                "decode_deadline_s", "rate_limit_per_s", "rate_limit_burst", "health_timeout_s", "allow_anonymous",
                "max_inflight_upload_bytes", "last_known_good_dir")


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
    laptop, 0.0.0.0 inside a pod). The file's own ``ray_actor_options.num_gpus`` must match the GPUs its
    device asks for (:func:`gpu_disagreements`): Serve applies the file's ``ray_actor_options`` as a whole,
    over what the application sets."""
    out = gpu_disagreements(cfg, serve_file, where)
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


def gpu_disagreements(cfg: ServeConfig, serve_file: ServeFile, where: str = "serve config") -> list[str]:
    """The file's ``ray_actor_options.num_gpus`` against the GPUs its replicas' device needs (the file's own
    ``device``/``num_gpus`` args, else params.yaml's): a cuda replica must reserve a GPU, a cpu one none."""
    actor = dict(serve_file.deployment.get("ray_actor_options") or {})
    if not actor:  # the application's own options apply (build_app sets num_gpus from the device)
        return []
    args = {k: serve_file.args[k] for k in ("device", "num_gpus") if k in serve_file.args}
    try:
        want = dataclasses.replace(cfg, **args).gpus
    except ValueError as exc:
        return [f"{where} args: {exc}"]
    have = float(actor.get("num_gpus") or 0.0)
    if have != want:
        device = args.get("device", cfg.device)
        return [f"{where} ray_actor_options.num_gpus = {have:g} but device {device!r} needs {want:g} "
                "(serve num_gpus)"]
    return []


def replica_actor_options(cfg: ServeConfig, given: dict[str, Any] | None) -> dict[str, Any]:
    """The replica's ``ray_actor_options``: ``given`` (which replace the decorator's as a whole, so they start
    from its ``num_cpus: 1``) plus the GPUs its device reserves, so Ray places a cuda replica on a GPU node with a
    GPU of its own. A ``num_gpus`` given that contradicts the device is refused."""
    actor = {"num_cpus": 1, **dict(given or {})}
    if cfg.gpus:
        if float(actor.get("num_gpus") or cfg.gpus) != cfg.gpus:
            raise ValueError(f"ray_actor_options.num_gpus = {actor['num_gpus']} but serve device {cfg.device!r} "
                             f"with num_gpus {cfg.num_gpus} asks for {cfg.gpus:g}")
        actor["num_gpus"] = cfg.gpus
    return actor


def check_device(device: str, *, cuda_available: bool, device_count: int, gpu_ids: list | None = None,
                 torch_cuda: str | None = None) -> None:
    """Fail fast, with what to change, when a replica set up for ``device`` cannot use it.

    ``cuda_available``/``device_count``: what torch sees; ``gpu_ids``: the GPUs Ray assigned this replica
    (``ray.get_gpu_ids()``; None outside Ray); ``torch_cuda``: ``torch.version.cuda`` (None on a CPU build).
    Ray 2.60 no longer hides the GPUs from an actor that reserved none, so a cuda replica without
    ``num_gpus`` would see every GPU and load onto GPU 0 next to all the others: that is an error here too."""
    if device == "cpu":
        return
    if not cuda_available:
        build = f"CUDA {torch_cuda}" if torch_cuda else "a CPU-only build"
        raise RuntimeError(
            f"serve device is {device!r} but CUDA is not available in this replica (torch is {build}, "
            f"{device_count} GPU(s) visible): run GPU replicas on a GPU worker group with the GPU image "
            "(infra/docker/Dockerfile, TORCH_VARIANT=cu*) and num_gpus > 0, or set serve.device: cpu")
    if gpu_ids is not None and len(gpu_ids) == 0:
        raise RuntimeError(
            f"serve device is {device!r} but Ray assigned this replica no GPU: set serve.num_gpus (or the "
            "deployment's ray_actor_options.num_gpus) > 0, e.g. 1, or 0.5 to share a GPU between two replicas")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= device_count:
        raise RuntimeError(f"serve device is {device!r} but this replica sees {device_count} GPU(s) "
                           f"(cuda:0..cuda:{device_count - 1}); Ray numbers a replica's own GPUs from 0: use 'cuda'")
