"""The two real samples shipped with the plugin (``samples/data``; licences in ``data/SOURCES.md``).

``bccd_smear_sample``
    one blood-smear field of the BCCD data set (MIT): a neutrophil among red cells,
    640 x 480 JPEG at an estimated 0.08 um/px (the data set records no pixel size).
``colicoords_storm_sample``
    real dSTORM localizations of one E. coli cell from ColiCoords (MIT), a ThunderSTORM
    CSV of 7,009 rows, rendered at 10 nm by the plugin's own reader.

Everything else the plugin shows as samples is simulated (:mod:`.smear`, :mod:`.storm`...).
"""

from __future__ import annotations

from pathlib import Path

#: The folder of the shipped real files, their licences and ``SOURCES.md``.
DATA_DIR = Path(__file__).resolve().parent / "data"
BCCD_FIELD = DATA_DIR / "bccd_BloodImage_00000.jpg"
COLICOORDS_STORM = DATA_DIR / "colicoords_03_storm_crop.csv"
#: Pixel size of the BCCD field: not recorded by the data set; a red cell (~7.5 um) spans
#: ~95 px, so about 0.08 um/px.
BCCD_PIXEL_UM = 0.08

BCCD_CREDIT = "BCCD data set (Shenggan/BCCD_Dataset, MIT licence), BloodImage_00000"
COLICOORDS_CREDIT = (
    "ColiCoords (Jhsmit/ColiCoords, MIT licence), examples/data/06/03_storm.csv, cropped"
)


def bccd_smear_sample() -> list:
    """npe2 ``sample_data``: a real blood-smear field (BCCD, MIT), in micrometres."""
    from napari_nucleus_ai.images import napari_units
    from napari_nucleus_ai.io import read_layers

    data, kwargs, kind = read_layers(BCCD_FIELD)[0]
    meta = dict(kwargs.get("metadata") or {})
    meta.update(
        pixel_size_um=[BCCD_PIXEL_UM, BCCD_PIXEL_UM],
        mpp=BCCD_PIXEL_UM,
        pixel_size_estimated=True,
        source=BCCD_CREDIT,
        synthetic=False,
    )
    kwargs = dict(
        kwargs,
        name="BCCD blood smear (real)",
        scale=(BCCD_PIXEL_UM, BCCD_PIXEL_UM),
        metadata=meta,
        **napari_units(2),
    )
    return [(data, kwargs, kind)]


def colicoords_storm_sample() -> list:
    """npe2 ``sample_data``: real dSTORM localizations of an E. coli cell (ColiCoords, MIT), in nm."""
    from napari_nucleus_ai.io import read_layers

    out = []
    for data, kwargs, kind in read_layers(COLICOORDS_STORM, pixel_size_nm=10.0, points=False):
        meta = dict(kwargs.get("metadata") or {}, source=COLICOORDS_CREDIT, synthetic=False)
        out.append(
            (data, dict(kwargs, name="E. coli dSTORM (real, ColiCoords)", metadata=meta), kind)
        )
    return out
