"""bioimage.io model packages for classifier packages: export, and import of our own exports.

:func:`export_bioimageio` writes a bioimage.io model package (a zip with ``rdf.yaml``,
model description format 0.5) for a classifier package:

* input ``crop`` (batch, channel, y, x): the crop this package prepares (centre-squared,
  resized to the card's crop size, scaled to [0, 1]; a STORM model takes one rendered
  patch), with the card's per-channel normalisation declared as preprocessing
  (``fixed_zero_mean_unit_variance``), so bioimage.io tools normalise it as we do; the
  space axes carry the card's physical pixel size;
* output ``probabilities`` (batch, channel): the calibrated class probabilities, one
  channel per class (channel names = class names), the mean over the ensemble members
  and the card's test-time augmentations (MC dropout is left out: the export is
  deterministic);
* weights ``torchscript`` (the network traced on the CPU, members, TTA, temperature and
  softmax included) and ``pytorch_state_dict`` (the same module's state dict; its
  architecture is :func:`bioimageio_classifier`, imported from this package,
  ``napari_nucleus_ai.models.bioimageio``, so running it needs
  ``pip install napari-nucleus-ai``), rebuilt that way at export and checked against the
  package's own probabilities; the architectures in :data:`STATE_DICT_ONLY` (``morph``,
  whose morphology descriptor is numpy / scikit-image code run inside ``forward``) have
  ``pytorch_state_dict`` weights only;
* ``test_input.npy`` / ``test_output.npy`` computed by the package itself, a cover image,
  ``README.md``, authors, license, citations and tags;
* the package's own files, ``card.json`` and ``weights.safetensors``, as attachments, and
  the card in ``config["napari-nucleus-ai"]["card"]``, so nothing is lost on the way back.

:func:`import_bioimageio` turns such a zip (or its unpacked folder) back into a normal
model package **without executing code from it**: ``rdf.yaml`` is parsed with
``yaml.safe_load``, the card must be in its ``config`` and name one of this package's
architectures, the tensors come from the safetensors attachment (or, failing that, from
the state dict read with ``torch.load(weights_only=True)``), every file is checked against
the SHA-256 the RDF declares, and the modules are built from the architecture name by this
package's code. Anything else (bioimage.io models that need their own Python code, or
TorchScript alone, whose loading runs TorchScript) is refused with one line.

:func:`validate_bioimageio` checks a package with the maintained ``bioimageio.spec``
library (optional extra ``napari-nucleus-ai[bioimageio]``) without network access.

Modules: ``layout`` (file names, keys, limits), ``network`` (the exported module),
``trace`` (test input, package output, checked TorchScript), ``documents`` (README,
cover, environment, citations), ``rdf`` (the description), ``export``, ``validate``,
``source`` (reading a package safely) and ``importer``.

Qt-free; torch is imported inside functions.
"""

from __future__ import annotations

from napari_nucleus_ai.models.bioimageio.documents import ARCH_CITES, MODALITY_TEXT, NAPARI_CITE
from napari_nucleus_ai.models.bioimageio.export import export_bioimageio
from napari_nucleus_ai.models.bioimageio.importer import import_bioimageio
from napari_nucleus_ai.models.bioimageio.layout import (
    BIOIMAGEIO_FORMAT,
    CONFIG_KEY,
    COVER,
    ENVIRONMENT,
    INPUT_ID,
    MAX_RDF_BYTES,
    OUTPUT_ID,
    RDF,
    RDF_NAMES,
    README,
    SAMPLE_INPUT,
    SAMPLE_OUTPUT,
    STATE_DICT,
    STATE_DICT_ONLY,
    TEST_INPUT,
    TEST_OUTPUT,
    TORCHSCRIPT,
)
from napari_nucleus_ai.models.bioimageio.network import bioimageio_classifier
from napari_nucleus_ai.models.bioimageio.rdf import MODALITY_TAGS, UNITS
from napari_nucleus_ai.models.bioimageio.validate import have_bioimageio_spec, validate_bioimageio

__all__ = [
    "ARCH_CITES",
    "BIOIMAGEIO_FORMAT",
    "CONFIG_KEY",
    "COVER",
    "ENVIRONMENT",
    "INPUT_ID",
    "MAX_RDF_BYTES",
    "MODALITY_TAGS",
    "MODALITY_TEXT",
    "NAPARI_CITE",
    "OUTPUT_ID",
    "RDF",
    "RDF_NAMES",
    "README",
    "SAMPLE_INPUT",
    "SAMPLE_OUTPUT",
    "STATE_DICT",
    "STATE_DICT_ONLY",
    "TEST_INPUT",
    "TEST_OUTPUT",
    "TORCHSCRIPT",
    "UNITS",
    "bioimageio_classifier",
    "export_bioimageio",
    "have_bioimageio_spec",
    "import_bioimageio",
    "validate_bioimageio",
]
