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
MAX_RDF_BYTES = 4 << 20
# the pytorch_state_dict architecture: the public import path, kept for every export
ARCHITECTURE_MODULE = "napari_nucleus_ai.models.bioimageio"
ARCHITECTURE_CALLABLE = "bioimageio_classifier"


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
