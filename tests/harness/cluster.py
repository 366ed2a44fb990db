"""A "beyond one machine" stand-in that runs on one machine: S3, an MLflow server and a multi-node Ray cluster.

Everything is a real separate process listening on 127.0.0.1:
- ``S3Server``: moto's S3-compatible server (``python -m moto.server``), the object store for DVC, MLflow
  artifacts and ``EULERNET_STORAGE``.
- ``MlflowServer``: ``mlflow server`` with a SQLite backend and ``--artifacts-destination s3://...`` on that S3.
- ``RayNodes``: a Ray head (``ray start --head``) plus worker nodes (``ray start --address=...``), each its own
  raylet with its own CPUs and custom resources.

Other test sessions on this machine may run their own Ray cluster at the same time, so nothing here may touch
theirs: every node gets its own ``--temp-dir`` (which also keeps ``ray_current_cluster`` out of ``/tmp/ray``,
where a bare ``ray.init()`` elsewhere would find it and connect to us), explicit free ports (the defaults,
e.g. the dashboard agent's 52365, clash with any other cluster), and teardown kills only the process groups we
started. ``ray stop`` is never called: it kills every Ray process of the user, whoever started it.
"""
from __future__ import annotations

import http.client
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# The fixed fake credentials moto accepts; clients (boto3, s3fs/DVC, pyarrow, MLflow) all read these variables.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}

# Offline machine: usage-stats and telemetry calls only produce refused connections and delays.
QUIET_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "RAY_TRAIN_ENABLE_STATE_TRACKING": "0",
}


class HarnessError(RuntimeError):
    """A harness process did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bin(name: str) -> str:
    # Console scripts of the interpreter running the tests, not whatever is first on PATH.
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@dataclass
class _Proc:
    """One process we started in its own session, so that its whole process group can be stopped."""

    name: str
    popen: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        # start_new_session made the leader's pid the group id; it stays valid for the members even after
        # the leader itself has exited.
        pgid = self.popen.pid
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _group_alive(pgid):
                time.sleep(0.2)
                self.popen.poll()  # reap the leader so it does not count as alive
            if not _group_alive(pgid):
                break
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # killpg(…, 0) also succeeds while only zombies remain; look for a live member.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state is [0], pgrp is [2].
        rest = stat.rsplit(")", 1)[1].split()
        if int(rest[2]) == pgid and rest[0] != "Z":
            return True
    return False


def _kill_by_env(marker: str) -> list[int]:
    """SIGKILL every process (but this one) whose environment holds ``marker``; returns their pids."""
    needle = marker.encode()
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed


def _spawn(name: str, cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> _Proc:
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = log.open("ab")
    popen = subprocess.Popen(
        cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        cwd=str(cwd) if cwd else None, start_new_session=True,
    )
    fh.close()
    return _Proc(name, popen, log)


def _wait_http(url: str, proc: _Proc, timeout_s: float, ok=lambda status: status < 500) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise HarnessError(f"{proc.name} exited with {proc.popen.returncode}:\n{_tail(proc.log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if ok(resp.status):
                    return
        except urllib.error.HTTPError as exc:
            if ok(exc.code):
                return
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            # A server still starting may accept the connection and close it with no status line (BadStatusLine):
            # not ready yet, like a refused connection.
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.3)
    raise HarnessError(f"{proc.name} not ready at {url} after {timeout_s:.0f}s ({last}):\n{_tail(proc.log)}")


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    # A RAY_ADDRESS inherited from the caller would make our `ray start --head` join someone else's cluster.
    env.pop("RAY_ADDRESS", None)
    env.update(QUIET_ENV)
    return env


# --------------------------------------------------------------------------------------------------- S3 (moto)
class S3Server:
    """moto's S3-compatible server on 127.0.0.1; state lives in its memory and dies with it."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._proc: _Proc | None = None

    def client_env(self) -> dict[str, str]:
        """Variables every S3 client needs: boto3/botocore, s3fs (DVC), pyarrow's S3FileSystem and MLflow."""
        return {
            **AWS_TEST_ENV,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
            # moto serves plain HTTP; path-style avoids bucket-name DNS lookups.
            "AWS_S3_ADDRESSING_STYLE": "path",
        }

    def start(self, timeout_s: float = 60.0) -> "S3Server":
        env = {**_base_env(), **AWS_TEST_ENV}
        self._proc = _spawn(
            "moto-s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env, self.workdir / "logs" / "moto.log",
        )
        _wait_http(f"{self.endpoint_url}/moto-api/", self._proc, timeout_s)
        return self

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=AWS_TEST_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under ``prefix`` (paginated, so large checkpoints do not hide behind 1000 keys)."""
        keys: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None


# ---------------------------------------------------------------------------------------------- MLflow server
class MlflowServer:
    """``mlflow server`` with a SQLite backend; artifacts are proxied to ``s3://bucket/prefix`` on the S3 server.

    Clients only need ``MLFLOW_TRACKING_URI``: the server proxies artifact uploads (``mlflow-artifacts:``), so
    S3 credentials stay on the server, as they would on a real cluster.
    """

    def __init__(self, workdir: Path, s3: S3Server, bucket: str, prefix: str = "mlflow", port: int | None = None):
        self.workdir = Path(workdir)
        self.s3 = s3
        self.artifacts_destination = f"s3://{bucket}/{prefix}"
        self.port = port or free_port()
        self.tracking_uri = f"http://127.0.0.1:{self.port}"
        self.backend_uri = f"sqlite:///{self.workdir / 'mlflow.db'}"
        self._proc: _Proc | None = None

    def start(self, timeout_s: float = 180.0) -> "MlflowServer":
        self.launch()
        return self.wait_ready(timeout_s)

    def launch(self) -> None:
        """Start the process without waiting (its SQLite migrations take a while; overlap them with Ray)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**_base_env(), **self.s3.client_env()}
        cmd = [
            _bin("mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", self.backend_uri,
            "--artifacts-destination", self.artifacts_destination,
            "--workers", "1",
        ]
        self._proc = _spawn("mlflow-server", cmd, env, self.workdir / "logs" / "mlflow.log", cwd=self.workdir)

    def wait_ready(self, timeout_s: float = 180.0) -> "MlflowServer":
        # /health answers before the database migrations finish; an API call proves the store is usable.
        _wait_http(f"{self.tracking_uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default",
                   self._proc, timeout_s, ok=lambda status: status == 200)
        return self

    def api_get(self, path: str, **query) -> dict:
        """GET ``/api/2.0/mlflow/<path>`` on the server's REST API; raises ``urllib.error.HTTPError`` on 4xx/5xx."""
        from urllib.parse import urlencode

        url = f"{self.tracking_uri}/api/2.0/mlflow/{path}"
        if query:
            url += "?" + urlencode(query)
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())

    def api_post(self, path: str, body: dict) -> dict:
        req = urllib.request.Request(
            f"{self.tracking_uri}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(grace_s=5.0)
            self._proc = None


# ------------------------------------------------------------------------------------------------ Ray nodes
@dataclass
class NodeSpec:
    """One Ray node: its CPUs and custom resources (e.g. ``{"node_b": 1}`` to pin work onto it).

    ``private_dirs``: folders this node sees empty (a private tmpfs mounted over each, in the node's own
    mount namespace), as a machine without the driver's disk would. A stage that hands workers a path on the
    driver's local disk then fails here as it would on a real cluster. Needs ``unshare`` and root.
    """

    name: str
    num_cpus: int = 1
    resources: dict[str, float] = field(default_factory=dict)
    object_store_mb: int = 150
    private_dirs: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"node name must be an identifier (it names a temp dir and a log), got {self.name!r}")
        if self.num_cpus < 0:
            raise ValueError(f"num_cpus must be >= 0, got {self.num_cpus}")
        if self.object_store_mb < 80:
            raise ValueError(f"object_store_mb must be >= 80 (Ray's minimum is 75 MB), got {self.object_store_mb}")
        self.private_dirs = tuple(str(Path(d).resolve()) for d in self.private_dirs)
        if self.private_dirs and not shutil.which("unshare"):
            raise ValueError("private_dirs needs the `unshare` tool (util-linux)")


def private_dirs_supported() -> bool:
    """Whether this machine lets us give a process a private mount namespace (root + unshare)."""
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs none /mnt"], capture_output=True, timeout=30)
    return probe.returncode == 0


class RayNodes:
    """A Ray head and worker nodes on this machine, each a separate ``ray start --block`` process group."""

    def __init__(self, workdir: Path, head: NodeSpec, workers: list[NodeSpec], extra_env: dict[str, str] | None = None,
                 dashboard: bool = True):
        names = [head.name] + [w.name for w in workers]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique, got {names}")
        self.workdir = Path(workdir)
        self.head = head
        self.workers = list(workers)
        # Ray 2.60 turns token authentication on for `ray start` whenever ~/.ray/auth_token exists, and every
        # client must then present it. Give the harness its own token, as a real cluster would have its own
        # secret, instead of depending on whatever sits in the user's home.
        self.auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        self.extra_env = {**dict(extra_env or {}), **self.auth_env}
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # The dashboard hosts the state API (`ray.util.state.list_tasks`): the only record of which node ran
        # which task once the drivers are gone. Off, the cluster is lighter but `tasks()` cannot answer.
        self.dashboard = dashboard
        self.dashboard_port = free_port() if dashboard else None
        # Unix socket paths are capped at 107 bytes, so the Ray temp dirs live in a short path under /tmp.
        self.temp_root = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
        self._procs: list[_Proc] = []

    def _node_cmd(self, spec: NodeSpec, head: bool) -> list[str]:
        cmd = [_bin("ray"), "start", "--block", "--disable-usage-stats",
               "--node-ip-address=127.0.0.1",
               f"--num-cpus={spec.num_cpus}", "--num-gpus=0",
               f"--object-store-memory={spec.object_store_mb * 1024 * 1024}",
               f"--temp-dir={self.temp_root / spec.name}",
               f"--dashboard-agent-listen-port={free_port()}",
               f"--metrics-export-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}",
               f"--node-manager-port={free_port()}",
               f"--object-manager-port={free_port()}",
               "--min-worker-port=0", "--max-worker-port=0"]
        if spec.resources:
            cmd.append(f"--resources={json.dumps(spec.resources)}")
        if head:
            cmd += ["--head", f"--port={self.port}", f"--ray-client-server-port={free_port()}"]
            if self.dashboard:
                cmd += ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={self.dashboard_port}"]
            else:
                cmd.append("--include-dashboard=false")
        else:
            cmd.append(f"--address={self.address}")
        if spec.private_dirs:
            # A private mount namespace: tmpfs over each folder, then exec ray (same pid, same process group);
            # the raylet's workers inherit the namespace, so nothing on this node sees those folders' files.
            mounts = " && ".join(f"mount -t tmpfs eulernet-private {shlex.quote(d)}" for d in spec.private_dirs)
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "sh", *cmd]
        return cmd

    def start(self, timeout_s: float = 180.0) -> "RayNodes":
        # Ray's own helper actors (e.g. Ray Train's PlacementGroupCleaner) call the state API without an address
        # and give up when they see several Ray instances on one machine, as here (never on a real node).
        # RAY_ADDRESS in the raylets' environment, inherited by every worker, names ours.
        env = {**_base_env(), **self.extra_env, "RAY_ADDRESS": self.address}
        head = _spawn(f"ray-{self.head.name}", self._node_cmd(self.head, True), env,
                      self.workdir / "logs" / f"ray-{self.head.name}.log")
        self._procs.append(head)
        deadline = time.monotonic() + timeout_s
        # `ray start --block` logs this line once its node is registered with the GCS; polling the log is far
        # cheaper than a driver connection on a loaded 2-core machine.
        self._wait_log(head, deadline)
        workers = [
            _spawn(f"ray-{spec.name}", self._node_cmd(spec, False), env, self.workdir / "logs" / f"ray-{spec.name}.log")
            for spec in self.workers
        ]
        self._procs.extend(workers)
        for proc in workers:
            self._wait_log(proc, deadline)
        self._wait_nodes(1 + len(self.workers), deadline)
        return self

    _STARTED = "Ray runtime started."

    def _wait_log(self, proc: _Proc, deadline: float) -> None:
        while time.monotonic() < deadline:
            if not proc.alive():
                raise HarnessError(f"{proc.name} exited with {proc.popen.returncode}:\n{_tail(proc.log)}")
            if self._STARTED in proc.log.read_text(errors="replace"):
                return
            time.sleep(0.5)
        raise HarnessError(f"{proc.name} did not start in time:\n{_tail(proc.log)}")

    def _wait_nodes(self, n: int, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            for proc in self._procs:
                if not proc.alive():
                    raise HarnessError(f"{proc.name} exited with {proc.popen.returncode}:\n{_tail(proc.log)}")
            try:
                alive = self.alive_nodes()
                if len(alive) >= n:
                    return
                last = f"{len(alive)} of {n} nodes alive"
            except Exception as exc:  # GCS not answering yet
                last = str(exc)
            time.sleep(1.0)
        logs = "\n".join(f"--- {p.name}\n{_tail(p.log, 15)}" for p in self._procs)
        raise HarnessError(f"Ray cluster at {self.address} not ready in time ({last}):\n{logs}")

    def run_driver(self, code: str, timeout_s: float = 120.0) -> object:
        """Run ``code`` as a Ray driver in a fresh process connected to this cluster; return its ``RESULT``.

        ``code`` runs after ``ray.init`` and must assign a JSON-serialisable ``RESULT``. A subprocess keeps the
        test process free of a driver connection (one per process), so tests may still use any other cluster.
        """
        prog = (
            "import json, ray\n"
            f"ray.init(address={self.address!r}, log_to_driver=False, configure_logging=False)\n"
            f"{code}\n"
            "print('RESULT=' + json.dumps(RESULT, default=str))\n"
        )
        env = {**_base_env(), **self.extra_env, "RAY_ADDRESS": self.address}
        out = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=timeout_s, env=env)
        for line in out.stdout.splitlines():
            if line.startswith("RESULT="):
                return json.loads(line[len("RESULT="):])
        raise HarnessError(f"driver on {self.address} failed (rc {out.returncode}):\n{out.stderr[-3000:]}")

    def alive_nodes(self) -> list[dict]:
        """Alive nodes as the GCS reports them (``NodeID``, ``Resources``, ...)."""
        return self.run_driver("RESULT = [n for n in ray.nodes() if n['Alive']]", timeout_s=60)

    def tasks(self, limit: int = 10_000) -> list[dict]:
        """Every task and actor-task the cluster ran, from the state API: ``name``, ``node_id``, ``job_id``,
        ``state``, ``type``. Finished jobs' tasks stay listed, so this works after the stage drivers exit."""
        if not self.dashboard:
            raise HarnessError("tasks() needs the state API: start RayNodes with dashboard=True")
        return self.run_driver(
            "from ray.util.state import list_tasks\n"
            f"RESULT = [{{k: getattr(t, k) for k in ('name', 'node_id', 'job_id', 'state', 'type')}}\n"
            f"          for t in list_tasks(address={self.address!r}, limit={limit}, detail=True, raise_on_missing_output=False)]",
            timeout_s=120)

    def node_names(self) -> dict[str, str]:
        """``node_id -> NodeSpec.name``, recognised by each node's own custom resource when it has one."""
        names = {}
        specs = [self.head, *self.workers]
        for node in self.alive_nodes():
            for spec in specs:
                if spec.resources and all(node["Resources"].get(k) == v for k, v in spec.resources.items()):
                    names[node["NodeID"]] = spec.name
        return names

    def stop(self) -> None:
        # Workers first, then the head: a worker raylet that loses its GCS first spends its grace time retrying.
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()
        # Raylets put each worker process in its own process group, so killing our groups can leave a worker
        # behind for a few seconds. Our cluster's secret is in exactly our processes' environment: sweep those.
        _kill_by_env(f"RAY_AUTH_TOKEN={self.auth_env['RAY_AUTH_TOKEN']}")
        shutil.rmtree(self.temp_root, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- everything
class ClusterHarness:
    """S3 + MLflow server + multi-node Ray, and the environment a stage needs to use them.

    >>> with ClusterHarness(tmp_path) as h:
    ...     subprocess.run(["eulernet", "train"], env=h.env(), check=True)
    """

    def __init__(self, workdir: Path, bucket: str = "eulernet", head: NodeSpec | None = None,
                 workers: list[NodeSpec] | None = None):
        self.workdir = Path(workdir)
        self.bucket = bucket
        self.s3 = S3Server(self.workdir / "s3")
        self.mlflow = MlflowServer(self.workdir / "mlflow", self.s3, bucket)
        head = head or NodeSpec("head", num_cpus=1, resources={"node_head": 1})
        workers = workers if workers is not None else [NodeSpec("node_b", num_cpus=1, resources={"node_b": 1})]
        # Ray workers write checkpoints and shards to S3 themselves, so every raylet carries the S3 variables.
        self.ray = RayNodes(self.workdir / "ray", head, workers, extra_env=self.s3.client_env())
        self.storage_uri = f"s3://{bucket}/storage"
        self.dvc_remote_uri = f"s3://{bucket}/dvc"

    def start(self) -> "ClusterHarness":
        try:
            self.s3.start()
            self.s3.create_bucket(self.bucket)
            self.mlflow.launch()
            self.ray.start()
            self.mlflow.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The configuration that turns the laptop default into "the cluster": nothing else changes."""
        env = dict(os.environ if base is None else base)
        env.update(QUIET_ENV)
        env.update(self.s3.client_env())
        env.update({
            "RAY_ADDRESS": self.ray.address,
            "MLFLOW_TRACKING_URI": self.mlflow.tracking_uri,
            "EULERNET_STORAGE": self.storage_uri,
        })
        env.update(self.ray.auth_env)
        return env

    def stop(self) -> None:
        # Each stop is independent: one failing must not leave the others running.
        for part in (self.ray, self.mlflow, self.s3):
            try:
                part.stop()
            except Exception as exc:  # pragma: no cover - best effort teardown
                print(f"harness teardown: {type(part).__name__}: {exc}", file=sys.stderr)

    def __enter__(self) -> "ClusterHarness":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
