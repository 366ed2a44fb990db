"""The ONNX Runtime engine: the "run the network on a batch of clips" step of the Predictor, without torch.

Everything else (crop checks, ``to_model_input``, ``clip_scores``, decisions) stays in the Predictor and
``tensors.py``: an :class:`OnnxEngine` has the contract of ``EulerNet.forward`` -- normalised clips
``(B, T, C, S, S)`` float32 in, maps ``(B, T, S/8, S/8)`` out -- so swapping it in changes one call.

Exporter choice. torch 2.13 has two exporters. The legacy TorchScript one (``dynamo=False``) cannot export
this network with a dynamic batch axis: EulerNet folds time into the batch (``reshape(b * t, ...)``) and then
calls ``adaptive_avg_pool2d`` (Eulerian input stage, Residual Pyramid ``_down``), whose TorchScript symbolic
needs static input sizes, and after a reshape by traced sizes it gets none ("input size not accessible").
Working around it needs private ``torch.onnx.symbolic_helper`` internals that this deprecated exporter keeps
changing. The ``torch.export`` based exporter (``dynamo=True``, needs ``onnxscript``) traces with symbolic
shapes, exports every variant with a dynamic batch unchanged, and matches torch to ~1e-7. It is slow (15-60 s
per export of the default variant on a busy 2-core CPU, mostly ``torch.export`` decompositions of the unrolled
DIIRF recurrences), so the graph is exported once -- at registration -- and stored beside the checkpoint in the
registered model; nothing on the serving path exports. Every fresh export is checked against torch on a probe
batch before it is used.

Nothing here runs at import time; ``onnx``, ``onnxscript`` and ``onnxruntime`` are imported when used.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

ENGINES = ("auto", "torch", "onnx")
OPSET = 18            # the torch.export exporter's native opset in torch 2.13 (onnxruntime 1.32 runs up to 23)
INPUT_NAME = "clips"  # (B, T, C, S, S) float32, normalised by tensors.to_model_input
OUTPUT_NAME = "maps"  # (B, T, S/8, S/8) float32 in [0, 1]
METADATA_KEY = "eulernet.inference"  # ONNX model metadata: the InferenceConfig, as in the checkpoint
VERIFY_ATOL = 1e-4    # largest |map difference| a fresh export may show against torch on the probe batch

log = logging.getLogger(__name__)


class OnnxUnavailable(RuntimeError):
    """The ONNX engine was asked for but cannot run here (onnxruntime/exporter missing, or not on CPU)."""


def onnxruntime_available() -> bool:
    """True when ``import onnxruntime`` works (imports it: a broken install counts as missing)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def exporter_available() -> bool:
    """True when the torch.export based ONNX exporter can run (it needs ``onnx`` and ``onnxscript``)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript"))


def _bare(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def export_onnx(model: torch.nn.Module, crop_size: int, *, inference: Any = None,
                path: str | os.PathLike | None = None, verify: bool = True) -> bytes:
    """The EulerNet ``model`` as a serialized ONNX graph with a dynamic batch axis (written to ``path`` too).

    ``inference`` (an InferenceConfig) is stored as JSON in the graph's metadata (key ``eulernet.inference``),
    so the file describes its own preprocessing like the checkpoint does. The export runs on a CPU copy in eval
    mode (the caller's model is untouched). ``verify``: run the graph in ONNX Runtime (when installed) on a probe
    batch and raise if any map value differs from torch by more than ``VERIFY_ATOL``.
    """
    if not exporter_available():
        raise OnnxUnavailable("exporting to ONNX needs the packages onnx and onnxscript "
                              "(pip install 'eulernet-fas[serve]')")
    net = copy.deepcopy(_bare(model)).cpu().eval()
    cfg = net.cfg
    probe = torch.randn(2, cfg.clip_len, cfg.in_channels, crop_size, crop_size,
                        generator=torch.Generator().manual_seed(0))  # (2, T, C, S, S); batch 2: not specialised
    batch = torch.export.Dim("batch", min=1)
    quiet = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(quiet), _quiet_loggers():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (probe,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=({0: batch},), opset_version=OPSET, optimize=True, verbose=False)
    proto = program.model_proto
    for node in proto.graph.node:  # the exporter records a Python stack per node: ~60% of the file, no use here
        del node.metadata_props[:]
    if inference is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(inference.to_dict(), sort_keys=True)
    data = proto.SerializeToString()
    if verify and onnxruntime_available():
        with torch.no_grad():
            want = net(probe).numpy()
        got = OnnxEngine(data, threads=1)(probe).numpy()
        err = float(np.abs(got - want).max())
        if not err <= VERIFY_ATOL:
            raise OnnxUnavailable(f"the exported ONNX graph differs from torch by {err:.2e} > {VERIFY_ATOL} on a "
                                  "probe batch; not using it")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


@contextlib.contextmanager
def _quiet_loggers():
    """The exporter logs a warning per missing optional op library (torchvision) and progress lines."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class OnnxEngine:
    """An ONNX Runtime session over an exported EulerNet graph, called like the model itself.

    Threads: ``intra_op_num_threads`` defaults to ``torch.get_num_threads()`` read when the session is made, so
    the ONNX path uses the cores the process already gave torch (Ray sets ``OMP_NUM_THREADS`` per actor, the Serve
    app and tests set torch's count) instead of ORT's default of one thread per physical core, which
    oversubscribes a shared CPU and competes with the face-finding threads. ``inter_op`` is 1: the graph is one
    chain of convolutions with tiny side branches, nothing worth a second pool. Spinning is off: an idle ORT
    worker otherwise busy-waits, burning the CPU the preprocessing threads of the same replica need.
    """

    def __init__(self, graph: bytes | str | os.PathLike, threads: int | None = None,
                 expect: tuple[int, int, int, int] | None = None, spin: bool = False):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise OnnxUnavailable("engine='onnx' needs onnxruntime: pip install 'eulernet-fas[serve]' "
                                  f"(import failed: {exc})") from exc
        self.threads = int(threads or torch.get_num_threads())
        source = str(graph) if isinstance(graph, (str, os.PathLike)) else bytes(graph)

        def session(n: int):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = n
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            # EXTENDED, not ALL: ALL adds the NCHWc layout rewrite, which here wraps every FCAM gate (a one-channel
            # map multiplied onto the features) in layout reorders that cost more than the blocked convolutions
            # gain. Measured on the sample model, 4 clips: 2 threads 87-91 -> 81-82 ms, 1 thread 160 -> 152-154 ms.
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
            opts.log_severity_level = 3  # errors only
            return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])

        self.session = session(self.threads)
        # A second, one-thread session for calls made while other work holds the cores (``busy=True``): there
        # the extra threads only wait for a core and add ~25 % CPU per call (measured), which a loaded replica
        # pays in throughput. Same graph and weights, so the maps are the same.
        self._one_thread = session(1) if self.threads > 1 else self.session
        inputs = self.session.get_inputs()
        if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in self.session.get_outputs()]:
            raise OnnxUnavailable(f"not an EulerNet graph: inputs {[i.name for i in inputs]}, want [{INPUT_NAME!r}]")
        self.input_shape = tuple(inputs[0].shape)  # ('batch', T, C, S, S)
        if expect is not None and tuple(self.input_shape[1:]) != tuple(expect):
            raise OnnxUnavailable(f"the ONNX graph takes clips {self.input_shape[1:]}, this model {tuple(expect)}")
        meta = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.inference_meta: dict | None = json.loads(meta) if meta else None

    def __call__(self, x: torch.Tensor | np.ndarray, busy: bool = False) -> torch.Tensor:
        """Maps ``(B, T, S/8, S/8)`` float32 for normalised clips ``(B, T, C, S, S)`` (what ``EulerNet(x)`` gives);
        ``busy``: other work is running on these cores, so use one thread."""
        arr = x.detach().to("cpu").numpy() if isinstance(x, torch.Tensor) else x
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        (maps,) = (self._one_thread if busy else self.session).run([OUTPUT_NAME], {INPUT_NAME: arr})
        return torch.from_numpy(maps)


def make_engine(engine: str, model: torch.nn.Module, crop_size: int, device: torch.device, *,
                graph: bytes | str | os.PathLike | None = None, threads: int | None = None,
                inference: Any = None) -> OnnxEngine | None:
    """The ONNX engine the Predictor should use, or None for torch.

    ``"torch"``: None. ``"onnx"``: an engine, or :class:`OnnxUnavailable` naming what is missing (onnxruntime;
    the exporter when no ``graph`` is given; a CPU device). ``"auto"``: ONNX Runtime when it is installed, the
    device is the CPU and a graph is given or can be exported and verified; otherwise torch (with a warning when
    the ONNX path was possible but failed).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "torch":
        return None
    cfg = _bare(model).cfg
    expect = (cfg.clip_len, cfg.in_channels, crop_size, crop_size)  # the graph's (T, C, S, S)

    def build() -> OnnxEngine:
        data = graph if graph is not None else export_onnx(model, crop_size, inference=inference)
        return OnnxEngine(data, threads=threads, expect=expect)

    if engine == "onnx":
        if torch.device(device).type != "cpu":
            raise OnnxUnavailable(f"the ONNX Runtime engine runs on the CPU, not {device}; use engine='torch'")
        if not onnxruntime_available():
            raise OnnxUnavailable("engine='onnx' needs onnxruntime: pip install 'eulernet-fas[serve]'")
        return build()
    if torch.device(device).type != "cpu" or not onnxruntime_available():
        return None
    if graph is None and not exporter_available():
        log.info("onnxruntime is installed but no ONNX graph was given and onnx/onnxscript are missing: torch engine")
        return None
    try:
        return build()
    except Exception as exc:  # auto must always give a working Predictor: any export/session failure -> torch
        warnings.warn(f"ONNX Runtime engine unavailable, using torch: {type(exc).__name__}: {exc}", stacklevel=3)
        return None


__all__ = ["ENGINES", "OnnxEngine", "OnnxUnavailable", "export_onnx", "exporter_available", "make_engine",
           "onnxruntime_available", "INPUT_NAME", "OUTPUT_NAME", "METADATA_KEY", "OPSET"]
