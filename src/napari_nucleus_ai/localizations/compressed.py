"""gzip-compressed localization files (``.csv.gz``, ``.txt.gz``): read through a plain copy.

Every text reader opens its file more than once (header sniffing, pandas, pyarrow),
so a compressed file is decompressed once into a private temporary folder, read,
and the copy removed. Errors name the compressed file, not the copy.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import zlib
from contextlib import contextmanager

from napari_nucleus_ai.core.errors import InputError


@contextmanager
def decompressed(path):
    """Yield the path of a decompressed copy of the gzip file ``path``."""
    path = os.fspath(path)
    name = os.path.basename(path)
    inner = name[:-3] if name.lower().endswith(".gz") else name + ".txt"
    with tempfile.TemporaryDirectory(prefix="nucleus-ai-gz-") as tmp:
        out = os.path.join(tmp, inner)
        try:
            with gzip.open(path, "rb") as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(
                path, f"truncated or corrupt gzip file ({' '.join(str(e).split())[:120]})"
            ) from e
        yield out
