"""`eulernet serve`: the Ray Serve liveness endpoint for models:/<name>@champion on 127.0.0.1."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from flows.args import params_option
from flows.errors import StageError

HELP = "run the Ray Serve liveness endpoint for models:/<name>@champion"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    params_option(parser, "serve")
    parser.add_argument("--port", type=int, default=None, help="HTTP port (default: serve.port)")
    parser.add_argument("--host", default=None, help="bind address (default: serve.host, 127.0.0.1)")
    parser.add_argument("--model-name", default=None, help="registered model (default: serve.model_name)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", default=None, help="serve a local checkpoint instead of the registry")
    src.add_argument("--reference", action="store_true",
                     help="serve the shipped reference model (models/reference/checkpoint.pt) instead of the registry")
    parser.add_argument("--allow-anonymous", action="store_true",
                        help="serve without an API key (sets serve.allow_anonymous): anyone who reaches the port "
                             "may score; without it the service needs EULERNET_API_KEY or EULERNET_API_KEY_FILE")
    parser.add_argument("--blocking", action="store_true",
                        help="stay in the foreground until Ctrl-C (always the case on a local Ray cluster)")
    parser.add_argument("--smoke-test", metavar="VIDEO", default=None,
                        help="start the service, POST VIDEO to /v1/liveness over HTTP, print the answer, shut down "
                             "(exit 1 unless the answer is a 200 with a score)")


def run(args) -> int:
    import dataclasses

    from components.config import ConfigError, load_section
    from components.serving.config import ServeConfig, ServeFile, disagreements, read_serve_config

    try:
        cfg = load_section(ServeConfig, "serve", args.params)
        # params.yaml is the one source of the settings; the Serve file (what `serve deploy` reads) must agree
        # with it, and adds what params does not own: replica sizing, autoscaling, timeouts.
        serve_file = read_serve_config(cfg.config_file) if os.path.isfile(cfg.config_file) else ServeFile({}, {}, {})
        problems = disagreements(cfg, serve_file, cfg.config_file)
        if problems:
            raise ConfigError("\n  ".join([f"{cfg.config_file} disagrees with {args.params}:"] + problems))
        cfg = dataclasses.replace(cfg, **{k: v for k, v in (("port", args.port), ("host", args.host),
                                                           ("model_name", args.model_name)) if v is not None})
        if args.reference:
            from components.runtime import reference_checkpoint

            args.checkpoint = reference_checkpoint()
        if args.allow_anonymous:
            cfg = dataclasses.replace(cfg, allow_anonymous=True)
        if cfg.request_log_dir and not os.environ.get("RAY_ADDRESS"):
            # Local replicas run in Ray's own working folders: a relative log folder is this checkout's.
            cfg = dataclasses.replace(cfg, request_log_dir=os.path.abspath(os.path.expanduser(cfg.request_log_dir)))
        from components.serving.access import load_api_keys, require_keys

        # On a local Ray the replicas inherit this environment, so their check can be made here, before Ray starts.
        # Joining a cluster (RAY_ADDRESS), the keys live in the replicas' pods: they check for themselves.
        local = not os.environ.get("RAY_ADDRESS")
        keys = load_api_keys() if local else ()
        if local:
            require_keys(keys, cfg.allow_anonymous)
        if local and not keys:
            print(f"eulernet serve: no API key: anyone who reaches {cfg.host}:{cfg.port} can score videos "
                  f"(serve.allow_anonymous)", flush=True)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise StageError(exc) from None
    if args.smoke_test and not os.path.isfile(args.smoke_test):
        raise StageError(f"--smoke-test video {args.smoke_test} does not exist")
    from ray import serve

    from components.runtime import header, init_ray, quiet_ray_console, use_mlflow, verbose_requested
    from components.serving.app import build_app

    model = args.checkpoint or f"models:/{cfg.model_name}@{cfg.alias}"
    smoke = f" (smoke test: POST {os.path.basename(args.smoke_test)}, then shut down)" if args.smoke_test else ""
    header("serve", f"{model} on http://{cfg.host}:{cfg.port}{cfg.route_prefix}{smoke}")
    stop = _StopSignal().install()  # from the first moment: a TERM during start-up is kept, not fatal
    tracking_uri = use_mlflow()
    from components.runtime import missing_sqlite_store

    missing = None if args.checkpoint else missing_sqlite_store(tracking_uri)
    if missing:
        raise StageError(f"no MLflow registry at {missing} (serving never creates one): run `dvc repro` (or "
                         f"`eulernet register`) first, set MLFLOW_TRACKING_URI to your registry, or serve a file with "
                         f"--checkpoint (or the shipped model with --reference)")
    try:
        local = init_ray()
    except SystemExit as exc:
        # ray.init's first act is a SIGTERM handler of its own that raises SystemExit(15): a TERM inside the
        # init window lands here. Ray may be half up: shut down what started and leave as a stop would.
        if exc.code != signal.SIGTERM:
            raise
        import ray

        print("eulernet serve: SIGTERM during start-up: stopping", flush=True)
        ray.shutdown()
        print("eulernet serve: stopped", flush=True)
        return 0
    stop.install()  # again: ray.init replaced the SIGTERM handler with its own
    serve.start(http_options={**serve_file.http_options, "host": cfg.host, "port": cfg.port})
    app = build_app(cfg.model_name, tracking_uri, cfg, checkpoint=args.checkpoint,
                    deployment_options=serve_file.deployment)
    if not verbose_requested():
        quiet_ray_console()  # serve.start configured Serve's driver-side logger anew
    try:
        serve.run(app, name="eulernet", route_prefix=cfg.route_prefix)
    except Exception as exc:  # replica constructor errors (no champion, bad checkpoint) surface here
        raise StageError(f"the application failed to start: {exc}") from None
    if stop.name is not None:  # asked to stop while starting: start-up is done, now stop cleanly
        print(f"eulernet serve: {stop.name} during start-up: stopping", flush=True)
        _drain_and_stop("eulernet")
        print("eulernet serve: stopped", flush=True)
        return 0
    url = f"http://{cfg.host}:{cfg.port}{cfg.route_prefix.rstrip('/')}"
    print(f"serving {args.checkpoint or f'models:/{cfg.model_name}@{cfg.alias}'} at {url}/ "
          f"(POST {url}/v1/liveness, docs at {url}/docs)", flush=True)
    if local:
        metrics = _metrics_url()
        if metrics:
            print(f"Prometheus metrics at {metrics} (docs/serving.md, Operations)", flush=True)
    if args.smoke_test:
        return _smoke_test(url, args.smoke_test)
    if args.blocking or local:
        name = stop.wait()
        timeout = (serve_file.deployment or {}).get("graceful_shutdown_timeout_s", 20)
        print(f"eulernet serve: {name}: draining in-flight requests (up to {timeout:g} s), then stopping", flush=True)
        _drain_and_stop("eulernet")
        print("eulernet serve: stopped", flush=True)
    return 0


def _metrics_url() -> str | None:
    """Where this node's Ray metrics agent serves Prometheus text (a random port on a local Ray; Ray binds it on
    every interface)."""
    import ray

    try:
        node = next(n for n in ray.nodes() if n.get("Alive") and n.get("MetricsExportPort"))
    except Exception:  # no live node, or Ray without its metrics agent
        return None
    return f"http://127.0.0.1:{node['MetricsExportPort']}/metrics"


class _StopSignal:
    """SIGTERM or SIGINT (Kubernetes, systemd, ``kill``, Ctrl-C), recorded from the moment ``install`` runs.

    Python handlers replace the fatal-signal dump Ray's core worker installs for SIGTERM (a stack trace on
    stderr and exit 15 with every in-flight request cut off). A signal during start-up is kept and acted on once
    Serve is up (stopping half-started Serve would leave actors behind); a second signal exits at once."""

    def __init__(self) -> None:
        import threading

        self._event = threading.Event()
        self.name: str | None = None

    def install(self) -> "_StopSignal":
        import signal

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum, frame) -> None:
        import signal

        if self._event.is_set():  # second Ctrl-C / TERM: stop waiting (Serve is still shut down on the way out)
            print("eulernet serve: second signal, stopping without waiting for the drain", file=sys.stderr, flush=True)
            raise SystemExit(1)
        self.name = signal.Signals(signum).name
        self._event.set()

    def wait(self) -> str:
        """Block until a signal came (or return at once if one already did); its name."""
        while not self._event.wait(1.0):
            pass
        return self.name or "signal"


def _drain_and_stop(app_name: str) -> None:
    """Delete the application, then stop Serve. Deleting it first lets each replica finish the requests it has
    (Serve waits up to the deployment's ``graceful_shutdown_timeout_s``) while the HTTP proxy is still there to
    deliver their answers."""
    from ray import serve

    with _stop_quietly():
        try:
            serve.delete(app_name, _blocking=True)
        finally:
            serve.shutdown()


@contextlib.contextmanager
def _stop_quietly():
    """A clean stop, without the console line Ray prints for it: Serve's controller ends by killing itself, and
    the raylet reports that on the driver's stdout as a failed task ("Task ServeController.graceful_shutdown
    failed ... killed by `ray.kill`"). Unless --verbose, what is printed while Serve and Ray stop goes to the
    session's log folder (eulernet-shutdown.log), and Ray is shut down inside, so nothing arrives later."""
    import ray

    from components.runtime import ray_logs_dir, verbose_requested

    if verbose_requested() or not ray.is_initialized():
        yield
        return
    with open(os.path.join(ray_logs_dir(), "eulernet-shutdown.log"), "a") as log, contextlib.redirect_stdout(log):
        try:
            yield
        finally:
            ray.shutdown()


def _smoke_test(url: str, video: str) -> int:
    """One real request through the HTTP front door, as a client would send it."""
    import json

    import httpx
    from ray import serve

    try:
        with open(video, "rb") as fh:
            resp = httpx.post(f"{url}/v1/liveness", files={"video": (os.path.basename(video), fh, "video/mp4")},
                              timeout=120)
        body = resp.json()
        print(f"POST {url}/v1/liveness {os.path.basename(video)} -> {resp.status_code}")
        print(json.dumps({k: body.get(k) for k in ("decision", "score", "threshold", "model", "latency_ms", "error",
                                                   "detail") if k in body}))
        return 0 if resp.status_code == 200 and "score" in body else 1
    finally:
        with _stop_quietly():
            serve.shutdown()
