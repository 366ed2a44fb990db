"""Load a registered version as a Predictor, refusing artifacts whose bytes differ from those registered."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .versions import CHAMPION, DIGEST_PREFIX, RegistryError, _client, _version_tags, alias_version, version_info


def verify_artifact(name: str, version: str, artifact: str, path: str | Path, tags: dict[str, str]) -> None:
    """Refuse a downloaded artifact whose sha256 differs from the one registered (a version registered before
    digests were recorded carries no tag and is accepted as it is)."""
    want = tags.get(f"{DIGEST_PREFIX}{artifact}")
    if want is None:
        return
    from components.data.digest import sha256_file

    got = sha256_file(path)
    if got != want:
        raise RegistryError(f"model {name} v{version}: artifact '{artifact}' has sha256 {got[:16]}..., registered "
                            f"{want[:16]}...; the stored file was changed after registration: refusing to load it")


def download_checkpoint(name: str, version: str, dst: str | Path | None = None,
                        tracking_uri: str | None = None) -> Path:
    """Fetch the checkpoint artifact of one version (by number, so an alias moving mid-download is harmless).

    The pyfunc model stores it at ``artifacts/checkpoint.pt``; only that file is downloaded."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from .pyfunc import CHECKPOINT_FILE

    dst = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix=f"{name}-v{version}-"))
    uri = _client(tracking_uri).get_model_version_download_uri(name, str(version))
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/artifacts/{CHECKPOINT_FILE}",
                                                    dst_path=str(dst), tracking_uri=tracking_uri)
    except (MlflowException, OSError) as exc:
        raise RegistryError(f"model {name} v{version} has no artifacts/{CHECKPOINT_FILE} under {uri}: {exc}") from exc
    return Path(local)


def download_graph(name: str, version: str, dst: str | Path, tracking_uri: str | None = None) -> Path | None:
    """The version's ONNX graph (``artifacts/model.onnx``), or None for a version registered without one."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from .pyfunc import ONNX_FILE

    uri = _client(tracking_uri).get_model_version_download_uri(name, str(version))
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri.rstrip('/')}/artifacts/{ONNX_FILE}",
                                                        dst_path=str(dst), tracking_uri=tracking_uri))
    except (MlflowException, OSError):
        return None


def download_prefix(name: str, version: str) -> str:
    """The temporary download folder's name prefix: model, version and the downloading process."""
    return f"{name}-v{version}-pid{os.getpid()}-"


_DOWNLOAD_DIR = re.compile(r".+-v\d+-pid(\d+)-[^/]+$")


def sweep_stale_downloads(tmp: str | Path | None = None) -> list[Path]:
    """Delete the download folders (:func:`download_prefix`) of processes that no longer exist on this host, e.g.
    a replica killed while it loaded a version; returns what was deleted. A live process's folder is never
    touched (a reused pid keeps its folder until that process is gone too)."""
    removed = []
    for d in Path(tmp or tempfile.gettempdir()).glob("*-v*-pid*-*"):
        m = _DOWNLOAD_DIR.match(d.name)
        if not m or not d.is_dir() or _alive(int(m.group(1))):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # PermissionError too means it runs (someone else's process)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def load_version(name: str, version: str, alias: str | None = None, tracking_uri: str | None = None,
                 device: str = "cpu", batch_size: int = 8, engine: str = "auto", threads: int | None = None,
                 on_verified: Callable[[Path, Path | None], None] | None = None):
    """``(Predictor, info dict)`` for one registered version. The downloaded checkpoint is deleted once loaded (a
    serving replica loads one per start and per reload: none may pile up in its temp folder).

    ``engine="auto"`` runs the version's registered ONNX graph in ONNX Runtime when onnxruntime is installed and
    the version has a graph, torch otherwise (nothing is exported at load time); ``"torch"``/``"onnx"`` force one.
    ``threads``: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()`` of the loading thread).
    ``on_verified(checkpoint, graph)`` sees the downloaded files once their digests matched, before they are deleted
    (a serving replica keeps a last-known-good copy that way)."""
    from components.inference.checkpoint import load_checkpoint
    from components.inference.predictor import Predictor

    from .pyfunc import CHECKPOINT_ARTIFACT, ONNX_ARTIFACT

    tags = _version_tags(_client(tracking_uri), name, str(version))
    # The downloads live only until their bytes are read: a process killed inside this block (a replica killed
    # mid-reload, Serve shutting one down) leaves them behind, so the block is kept short (the Predictor is built
    # after it) and the folder names its process, so the next replica can sweep it (sweep_stale_downloads).
    with tempfile.TemporaryDirectory(prefix=download_prefix(name, version)) as tmp:
        path = download_checkpoint(name, version, dst=tmp, tracking_uri=tracking_uri)
        verify_artifact(name, version, CHECKPOINT_ARTIFACT, path, tags)
        graph = download_graph(name, version, tmp, tracking_uri) if engine != "torch" else None
        if graph is not None:
            verify_artifact(name, version, ONNX_ARTIFACT, graph, tags)
        if graph is None and engine == "auto":
            engine = "torch"
        if on_verified is not None:
            on_verified(path, graph)
        ckpt = load_checkpoint(path)
        onnx_graph = None if graph is None else graph.read_bytes()
    predictor = Predictor.from_checkpoint(ckpt, device=device, batch_size=batch_size, engine=engine,
                                          onnx_graph=onnx_graph, threads=threads)
    return predictor, version_info(name, version, alias=alias, tracking_uri=tracking_uri)


def load_champion(name: str, alias: str = CHAMPION, tracking_uri: str | None = None):
    """``(Predictor, info dict)`` for ``models:/<name>@<alias>``."""
    version = alias_version(name, alias, tracking_uri)
    if version is None:
        raise RegistryError(f"model {name!r} has no '{alias}' alias (register and promote a model first)")
    return load_version(name, version, alias=alias, tracking_uri=tracking_uri)
