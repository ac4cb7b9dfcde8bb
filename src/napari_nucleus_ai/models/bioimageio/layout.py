"""What a bioimage.io package from napari-nucleus-ai holds: file names, ids, keys, limits.

Also the two small helpers every step uses: :func:`sha256` of a file's bytes and
:func:`short` for an exception in one clipped line.
"""

from __future__ import annotations

import hashlib

CONFIG_KEY = "napari-nucleus-ai"
RDF = "rdf.yaml"
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
BIOIMAGEIO_FORMAT = "0.5.4"
INPUT_ID, OUTPUT_ID = "crop", "probabilities"
TORCHSCRIPT = "weights_torchscript.pt"
STATE_DICT = "weights_state_dict.pt"
ENVIRONMENT = "environment.yaml"
TEST_INPUT, TEST_OUTPUT = "test_input.npy", "test_output.npy"
COVER, README = "cover.png", "README.md"
SAMPLE_INPUT, SAMPLE_OUTPUT = "sample_input.tif", "sample_output.tif"
# rdf.yaml holds the card, whose JSON may reach models.package.MAX_CARD_BYTES (8 MB; a
# card with a domain-shift score and a fallback model's card is ~2 MB): YAML is a bit larger
MAX_RDF_BYTES = 16 << 20
#: The largest difference of a probability allowed between the exported weights and the
#: package: checked at export (trace.py), declared as the reproducibility tolerance (rdf.py)
REPRODUCE_ATOL = 1e-4
# the pytorch_state_dict architecture: the public import path, kept for every export
ARCHITECTURE_MODULE = "napari_nucleus_ai.models.bioimageio"
ARCHITECTURE_CALLABLE = "bioimageio_classifier"
#: Architectures exported without TorchScript, and why: ``pytorch_state_dict`` weights only,
#: whose architecture (:func:`.network.bioimageio_classifier`) runs the numpy code in ``forward``.
STATE_DICT_ONLY = {
    "morph": "cell-morphology descriptor (nucleus and cell segmentation with connected "
    "components, a watershed and distance transforms; local binary patterns) is numpy / "
    "SciPy / scikit-image code, which TorchScript can neither trace nor script",
}


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``, as rdf.yaml declares it.

    Parameters
    ----------
    data : bytes
        A file's contents.

    Returns
    -------
    str
        The lower-case hex digest.
    """
    return hashlib.sha256(data).hexdigest()


def short(e: BaseException, n: int = 120) -> str:
    """``e`` as one line of at most ``n`` characters (its type name when it has no text).

    Parameters
    ----------
    e : BaseException
        The error to describe.
    n : int
        The longest line returned.

    Returns
    -------
    str
        The message with its whitespace collapsed, clipped to ``n`` characters.
    """
    return " ".join(str(e).split())[:n] or type(e).__name__
