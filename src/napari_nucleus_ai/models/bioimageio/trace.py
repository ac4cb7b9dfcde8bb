"""The network's test input, the package's own probabilities for it, and the checked trace."""

from __future__ import annotations

import io
import os

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.models.bioimageio.layout import REPRODUCE_ATOL, short


def sample_input(package, sample) -> np.ndarray:
    """One raw network input ``(1, C, S, S)`` in [0, 1] (before normalisation).

    Parameters
    ----------
    package : ModelPackage
        The classifier package.
    sample : path, array or None
        A crop (or STORM localization file / render); None for a deterministic noise crop
        with the training set's channel statistics.

    Returns
    -------
    ndarray, float32
        The prepared crop.
    """
    from napari_nucleus_ai.models.inputs import raw_inputs

    card = package.card
    spec = card["input"]
    c, s = int(spec["channels"]), int(spec["crop_size"])
    if sample is None:  # deterministic: noise with the training set's channel statistics
        rng = np.random.default_rng(0)
        mean = np.asarray(spec["normalisation"]["mean"], np.float32)[:, None, None]
        std = np.asarray(spec["normalisation"]["std"], np.float32)[:, None, None]
        x = mean + std * rng.standard_normal((c, s, s)).astype(np.float32)
        return np.clip(x, 0.0, 1.0)[None].astype(np.float32)
    if isinstance(sample, str | os.PathLike):
        from napari_nucleus_ai.models.crops import read_item

        sample = read_item(os.fspath(sample), package)
    x, _ = raw_inputs([sample], card)
    return np.ascontiguousarray(x[:1], np.float32)


def package_probabilities(package, x_norm: np.ndarray, tta: int) -> np.ndarray:
    """The package's mean probabilities for normalised ``x_norm`` on the CPU, no MC dropout.

    Through the package's own ``predict`` (its kind's), so the card's adaptive test-time
    views count as they do in ``napari-nucleus-ai predict``.

    Parameters
    ----------
    package : ModelPackage
        The classifier package (moved to the CPU).
    x_norm : ndarray, shape (N, C, S, S)
        Normalised network inputs.
    tta : int
        Test-time transforms.

    Returns
    -------
    ndarray, float32, shape (N, n_classes)
    """
    package.to("cpu")
    samples = package.kind.predict(package, x_norm, {"tta": int(tta), "mc_dropout": 0})
    if isinstance(samples, tuple):  # (samples, extra columns)
        samples = samples[0]
    return np.asarray(samples).mean(0).astype(np.float32)


def state_dict_checked(state: bytes, kwargs: dict, x: np.ndarray, expected: np.ndarray, path):
    """Check the ``pytorch_state_dict`` weights as bioimage.io tools load them.

    A fresh :func:`.network.bioimageio_classifier` built from ``kwargs``, the state dict
    read with ``torch.load(weights_only=True)`` and loaded strictly, in eval mode without
    gradients, must give ``expected`` within :data:`~.layout.REPRODUCE_ATOL` on copies of
    ``x``.

    Parameters
    ----------
    state : bytes
        The saved state dict.
    kwargs : dict
        The architecture's keyword arguments, as rdf.yaml declares them.
    x : ndarray, shape (1, C, S, S)
        The normalised test input.
    expected : ndarray, shape (B, n_classes)
        The package's probabilities for ``B`` copies of ``x``.
    path : path
        The model, for error messages.

    Raises
    ------
    InputError
        The network cannot be rebuilt, or it gives other probabilities.
    """
    import torch

    from napari_nucleus_ai.models.bioimageio.network import bioimageio_classifier

    try:
        net = bioimageio_classifier(**kwargs)
        net.load_state_dict(
            torch.load(io.BytesIO(state), map_location="cpu", weights_only=True), strict=True
        )
        with torch.no_grad():
            got = net.eval()(torch.from_numpy(np.repeat(x, len(expected), 0))).numpy()
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - building and loading raise many types
        raise InputError(
            path, f"the pytorch_state_dict weights cannot be rebuilt ({short(e)})"
        ) from None
    if got.shape != expected.shape or not np.allclose(got, expected, atol=REPRODUCE_ATOL, rtol=0):
        raise InputError(
            path, "the pytorch_state_dict weights do not reproduce the package's probabilities"
        )


def trace_checked(wrapper, x: np.ndarray, expected: np.ndarray, path) -> bytes:
    """TorchScript of ``wrapper`` (traced on the CPU) checked against the package's output.

    Parameters
    ----------
    wrapper : torch.nn.Module
        The exported network (:func:`.network.ensemble`).
    x : ndarray, shape (1, C, S, S)
        The normalised test input; traced at batch 2 and checked at batch 3, and on a
        shifted copy against ``wrapper`` itself.
    expected : ndarray, shape (3, n_classes)
        The package's probabilities for three copies of ``x``.
    path : path
        The model, for error messages.

    Returns
    -------
    bytes
        The saved TorchScript module.

    Raises
    ------
    InputError
        The network cannot be traced, or the trace gives other probabilities.
    """
    import warnings

    import torch

    example = torch.from_numpy(np.repeat(x, 2, 0))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about constant shapes
            traced = torch.jit.trace(wrapper, example, check_trace=False)
            got = traced(torch.from_numpy(np.repeat(x, 3, 0))).numpy()
            # another input, against the module itself: a trace that froze a value computed
            # outside torch (numpy) as a constant gives the traced input's answer here
            other = torch.from_numpy(np.roll(x, (1, 2), (-2, -1)))
            moved, want = traced(other).numpy(), wrapper(other).numpy()
    except Exception as e:  # noqa: BLE001 - tracing raises many types
        raise InputError(
            path, f"the network cannot be traced to TorchScript ({short(e)})"
        ) from None
    if (
        got.shape != (3, expected.shape[1])
        or not np.allclose(got, expected, atol=REPRODUCE_ATOL, rtol=0)
        or not np.allclose(moved, want, atol=REPRODUCE_ATOL, rtol=0)
    ):
        raise InputError(
            path, "the TorchScript trace does not reproduce the package's probabilities"
        )
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch >= 2.9 marks TorchScript deprecated
        torch.jit.save(traced, buf)
    return buf.getvalue()
