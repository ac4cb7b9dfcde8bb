"""Segmentation methods; one module per method, all Qt-free.

- :mod:`.nuclei` -- ``segment_nuclei(image2d, pixel_size_um=None, **params)`` for Hoechst / DAPI.
- :mod:`.wbc` -- ``segment_wbc(rgb, pixel_size_um=None, **params)`` for stained blood smears.
- :mod:`.storm` -- ``segment_storm_nuclei(df, pixel_size_nm=...)`` from localization density.
- :mod:`.tiles` -- tile-wise segmentation of whole slides with overlap and label stitching.
- :mod:`.deep` -- optional Cellpose / StarDist / InstanSeg backends (local weights only).
- :mod:`.run` -- the core generator the dock and the CLI share.
"""
