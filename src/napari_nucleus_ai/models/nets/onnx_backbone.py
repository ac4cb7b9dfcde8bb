"""The frozen ImageNet backbone through ONNX Runtime, for inference on the CPU (optional
``[onnx]`` extra: ``onnxruntime`` runs the network, ``onnx`` lets torch export it).

ONNX Runtime runs EfficientNet-Lite0 in less than half of PyTorch's CPU time per view on this
project's machine (docs/performance.md). The network is exported once per set of weights
(torch's exporter, a few seconds) to the user's cache, named by the SHA-256 of the weights,
and read from there afterwards. The file is a graph of standard operators: loading it runs no
code. Every new session is checked against PyTorch on two inputs before it is used; a session
that disagrees, or any failure to export or load, leaves the PyTorch backbone in use.

:func:`onnx_backbone` returns None (PyTorch then) when the extra is not installed or
``NAPARI_NUCLEUS_AI_ONNX=0`` is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
FORMAT = 1  # the exported graph's layout: part of the cache file's name
TOLERANCE = 1e-4  # largest difference to PyTorch's features accepted, relative to their largest
#: Inputs per session run. ONNX Runtime keeps the largest activations it has seen in its
#: memory arena (about 11 MB per 224-px input) for the rest of the process: a 64-input run
#: leaves ~690 MB there, runs of 8 ~110 MB, and runs of 8 take 7.8-8.0 instead of 9.4-9.9 ms
#: CPU per input (one thread; docs/performance.md).
RUN_BATCH = 8


def available() -> bool:
    """True when ONNX Runtime and the ONNX exporter's package are installed and not switched
    off by ``NAPARI_NUCLEUS_AI_ONNX=0`` (found without importing them)."""
    if os.environ.get("NAPARI_NUCLEUS_AI_ONNX", "1") == "0":
        return False
    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "onnx"))


def cache_dir() -> Path:
    """Where exported backbones are kept (``onnx`` in :func:`.core.files.cache_dir`)."""
    from napari_nucleus_ai.core.files import cache_dir as plugin_cache

    return plugin_cache("onnx")


def weights_digest(net) -> str:
    """SHA-256 (24 hex) of a network's parameters and buffers, in state-dict order."""
    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:24]


def _pooled(net):
    """``net.extract_features(x).mean((2, 3))`` as a module: the graph that is exported."""
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x).mean((2, 3))

    return Pooled(net).eval()


def _export(net, path: Path, size: int) -> None:
    """Export the pooled features of ``net`` for ``(N, 3, size, size)`` inputs, atomically."""
    import tempfile
    import warnings

    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _pooled(net),
                (torch.zeros(2, 3, size, size),),
                tmp,
                dynamo=False,
                input_names=["x"],
                output_names=["features"],
                dynamic_axes={"x": {0: "n"}, "features": {0: "n"}},
                opset_version=17,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on ``path`` + ``.lock`` (POSIX; no lock elsewhere)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class OnnxBackbone:
    """Pooled backbone features ``(N, 1280)`` from an ONNX Runtime session (CPU only).

    Parameters
    ----------
    path : Path
        The exported graph.
    threads : int
        ONNX Runtime's intra-op threads (PyTorch's count in this process).
    """

    device_type = "cpu"

    def __init__(self, path: Path, threads: int):
        self.path, self.threads = path, max(1, int(threads))
        self._open()

    def __getstate__(self) -> dict:
        # copied or pickled (a model deep-copied for retraining) by its file: a session
        # does not pickle, the copy opens its own when first used
        return {"path": self.path, "threads": self.threads}

    def __setstate__(self, state: dict) -> None:
        self.path, self.threads = state["path"], state["threads"]
        self.session, self.pid = None, None

    def _open(self) -> None:
        self.pid = os.getpid()
        self.session = _session(self.path, self.threads)

    def pooled(self, x):
        """Features of normalised ``(N, 3, H, W)`` float32 inputs, as a torch tensor
        (computed :data:`RUN_BATCH` inputs at a time)."""
        import torch

        if self.session is None or os.getpid() != self.pid:  # a copy, or a forked process
            # (a session's threads stay behind in the parent)
            self.threads = torch.get_num_threads()
            self._open()
        a = np.ascontiguousarray(x.detach().cpu().float().numpy())
        if len(a) <= RUN_BATCH:
            return torch.from_numpy(self.session.run(None, {"x": a})[0])
        runs = [
            self.session.run(None, {"x": a[i : i + RUN_BATCH]})[0]
            for i in range(0, len(a), RUN_BATCH)
        ]
        return torch.from_numpy(np.concatenate(runs))


_SESSIONS: dict = {}  # (file, its time and size, threads, process) -> its session


def _session(path: Path, threads: int):
    """One ONNX Runtime session per exported file and thread count in a process: the models
    of a package (the first and its fallback) share the frozen backbone's weights, so they
    share its session and its memory arena. Sessions of other processes (a fork's parent)
    are not reused (their threads stay behind in the parent)."""
    import onnxruntime as ort

    st = os.stat(path)  # a file written again (a new export) gets a new session
    key = (str(path), st.st_mtime_ns, st.st_size, int(threads), os.getpid())
    session = _SESSIONS.get(key)
    if session is None:
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        _SESSIONS[key] = session  # (a parent's entries stay: never closed in a fork)
    return session


def onnx_backbone(net, size: int):
    """An :class:`OnnxBackbone` computing the same features as ``net`` (checked), or None.

    ``net`` is the backbone in eval mode (its inference copy); ``size`` the input side.
    """
    if not available():
        return None
    import torch

    try:
        path = cache_dir() / f"efficientnet-lite0-f{FORMAT}-{weights_digest(net)}.onnx"
        if not path.is_file():
            with _exclusive(path):  # processes starting together export it once
                if not path.is_file():
                    _export(net, path, size)
        fast = OnnxBackbone(path, torch.get_num_threads())
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = _pooled(net)(x.contiguous(memory_format=torch.channels_last))
        if float((fast.pooled(x) - ref).abs().max()) > TOLERANCE * float(ref.abs().max()):
            log.warning("the ONNX backbone in %s disagrees with PyTorch; not used", path)
            return None
        return fast
    except Exception as e:  # noqa: BLE001 - any failure leaves PyTorch's backbone in use
        log.warning("ONNX Runtime not used for the backbone: %s", " ".join(str(e).split())[:160])
        return None
