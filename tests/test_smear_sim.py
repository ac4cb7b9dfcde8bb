"""The synthetic smear: deterministic, with ground truth whose classes look like their class."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label as cc_label
from skimage.measure import regionprops

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.samples.smear import (
    WBC_CLASSES,
    simulate_smear,
    simulate_smear_field,
    simulate_wbc_crop,
)


@pytest.fixture(scope="module")
def field():
    # every class twice, at the default 0.1 um/px
    return simulate_smear(seed=3, shape=(900, 1200), n_wbc=14)


def test_deterministic_and_seed_dependent():
    a = simulate_smear_field(seed=5)
    b = simulate_smear_field(seed=5)
    c = simulate_smear_field(seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2].equals(b[2])
    assert not np.array_equal(a[0], c[0])


def test_field_contract():
    img, labels, table = simulate_smear_field(seed=0, shape=(480, 640), n_wbc=3)
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    assert labels.shape == (480, 640) and np.issubdtype(labels.dtype, np.integer)
    assert sorted(np.unique(labels)[1:]) == sorted(table["label"]) == [1, 2, 3]
    assert set(table["class"]) <= set(WBC_CLASSES) and len(set(table["class"])) == 3
    assert table["unit"].eq("um").all()


def test_every_class_present_with_nucleus_inside_its_cell(field):
    t = field.table
    assert sorted(t["class"].value_counts().to_dict().items()) == sorted(
        (c, 2) for c in WBC_CLASSES
    )
    for lab in t["label"]:
        cell = field.cells == lab
        nuc = field.nuclei == lab
        assert nuc.sum() > 0.1 * cell.sum()
        assert not np.any(nuc & ~cell)


def _stats(field, cls):
    out = []
    img = field.image.astype(float)
    for lab in field.table.loc[field.table["class"] == cls, "label"]:
        cell, nuc = field.cells == lab, field.nuclei == lab
        cyto = cell & ~nuc
        props = regionprops(nuc.astype(np.uint8))[0]
        out.append({
            "diameter_um": 2 * np.sqrt(cell.sum() / np.pi) * field.pixel_size_um,
            "nc_ratio": nuc.sum() / cell.sum(),
            "solidity": props.solidity,
            "pieces": cc_label(nuc).max(),
            "nucleus_rgb": img[nuc].mean(0),
            "cyto_rgb": img[cyto].mean(0),
        })  # fmt: skip
    return out


def test_class_typical_morphology(field):
    s = {c: _stats(field, c) for c in WBC_CLASSES}
    mean = {c: {k: np.mean([d[k] for d in v], axis=0) for k in v[0]} for c, v in s.items()}
    # sizes from haematology atlases
    assert 7.5 < mean["lymphocyte"]["diameter_um"] < 10.5
    assert (
        mean["monocyte"]["diameter_um"]
        > mean["neutrophil"]["diameter_um"]
        > mean["lymphocyte"]["diameter_um"]
    )
    # round nuclei fill lymphocytes and blasts; monocytes and granulocytes have more cytoplasm
    assert mean["lymphocyte"]["nc_ratio"] > 0.5 and mean["blast"]["nc_ratio"] > 0.5
    assert mean["monocyte"]["nc_ratio"] < mean["blast"]["nc_ratio"]
    # round nuclei are convex; kidney, band and segmented ones are not
    for convex in ("lymphocyte", "blast"):
        assert mean[convex]["solidity"] > 0.95
    for concave in ("monocyte", "band", "neutrophil"):
        assert mean[concave]["solidity"] < mean["lymphocyte"]["solidity"] - 0.05
    # nuclei are dark purple: darker than the cytoplasm, blue above green
    for c in WBC_CLASSES:
        nrgb, crgb = mean[c]["nucleus_rgb"], mean[c]["cyto_rgb"]
        assert nrgb.sum() < crgb.sum()
        assert nrgb[2] > nrgb[1]
    # eosinophil granules are orange-red: redder cytoplasm than a neutrophil's
    eo, ne = mean["eosinophil"]["cyto_rgb"], mean["neutrophil"]["cyto_rgb"]
    assert eo[0] - eo[2] > ne[0] - ne[2] + 15
    # basophil granules are dark over the whole cell
    assert mean["basophil"]["cyto_rgb"].sum() < mean["neutrophil"]["cyto_rgb"].sum() - 60


def test_red_cells_and_background(field):
    img = field.image.astype(int)
    free = field.cells == 0
    assert field.n_rbc > 50 and field.n_platelets >= 1
    # red cells are pink (red above green) and cover a good part of the field
    pinkish = free & (img[..., 0] - img[..., 1] > 40)
    assert 0.2 < pinkish.mean() < 0.7
    # background is bright and nearly neutral
    bright = free & (img.sum(-1) > 640)
    assert bright.mean() > 0.15


def test_wbc_crop_is_centred(tmp_path):
    for cls in ("neutrophil", "blast"):
        crop = simulate_wbc_crop(cls, seed=2, size=200)
        assert crop.shape == (200, 200, 3) and crop.dtype == np.uint8
        # the darkest (nuclear) pixels sit in the middle of the crop
        dark = crop.sum(-1) < np.percentile(crop.sum(-1), 2)
        ys, xs = np.nonzero(dark)
        assert abs(ys.mean() - 100) < 30 and abs(xs.mean() - 100) < 30
    np.testing.assert_array_equal(
        simulate_wbc_crop("band", 1, 96), simulate_wbc_crop("band", 1, 96)
    )


def test_unknown_class_is_an_input_error():
    with pytest.raises(InputError, match="unknown white-cell classes"):
        simulate_smear_field(classes=("neutrophil", "platypus"))


def test_class_frequencies_from_a_dict():
    _, _, t = simulate_smear_field(
        seed=1, shape=(1000, 1000), n_wbc=8, classes={"lymphocyte": 1.0, "blast": 0.0}
    )
    assert set(t["class"]) == {"lymphocyte"}


def test_field_sample_layers():
    from napari_nucleus_ai.samples.smear import smear_field_sample

    (img, ikw, ik), (lab, lkw, lk) = smear_field_sample()
    assert ik == "image" and ikw["rgb"] and ikw["scale"] == (0.1, 0.1)
    assert lk == "labels" and lab.max() == len(lkw["features"]) and "class" in lkw["features"]
    assert lkw["visible"] is False
