"""Segmentation methods; one module per method, all Qt-free.

- :mod:`.nuclei` -- ``segment_nuclei(image2d, pixel_size_um=None, **params)`` for Hoechst / DAPI.
- :mod:`.wbc` -- ``segment_wbc(rgb, pixel_size_um=None, **params)`` for stained blood smears.
- :mod:`.storm` -- ``segment_storm_nuclei(df, pixel_size_nm=...)`` from localization density.
- :mod:`.tiles` -- tile-wise segmentation of whole slides with overlap and label stitching.
- :mod:`.deep` -- optional Cellpose / StarDist / InstanSeg backends (local weights only).
- :mod:`.run` -- the core generator the dock and the CLI share.
- :mod:`.file` -- one file in, labels TIFF and cell table CSV out (the CLI and batch share it).
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "run": ["Segmentation", "segment", "check_params", "method_schema"],
        "file": ["segment_file"],
        "wbc": ["segment_wbc"],
        "nuclei": ["segment_nuclei", "segment_nuclei_stack"],
        "storm": ["segment_storm_nuclei"],
        "tiles": ["segment_tiled"],
        "writers": ["write_labels_tif"],
    },
)
