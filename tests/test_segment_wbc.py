"""White cells in smears: real BCCD / PBC fields, synthetic smears, perturbations, bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.segment.evaluate import Score, centroids_of, read_voc_boxes, score_centroids
from napari_nucleus_ai.segment.wbc import segment_wbc


def _bccd(shared_data, step=10):
    from skimage.io import imread

    root = shared_data / "smear" / "bccd"
    names = (root / "trainval.txt").read_text().split()[::step]
    extra: dict = {}
    with open(root / "wbc_extra.csv") as fh:
        for row in csv.DictReader(fh):
            box = tuple(float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            extra.setdefault(row["image"], {"wbc": [], "ignore": []})[row["kind"]].append(box)
    for n in names:
        ex = extra.get(n, {"wbc": [], "ignore": []})
        boxes = read_voc_boxes(root / "Annotations" / f"{n}.xml") + ex["wbc"]
        yield n, imread(root / "JPEGImages" / f"{n}.jpg"), boxes, ex["ignore"]


def test_bccd_subset_detection_figures(shared_data):
    total = Score()
    for name, rgb, boxes, ignore in _bccd(shared_data):
        labels = segment_wbc(rgb)
        assert labels.shape == rgb.shape[:2] and labels.dtype == np.int32
        total = total + score_centroids(centroids_of(labels), boxes, ignore, tag=name)
    assert total.boxes >= 25
    assert total.recall >= 0.97, total.summary()
    assert total.precision >= 0.95, total.summary()
    assert total.split_rate <= 0.05, total.summary()


def test_bccd_perturbed_half_scale_and_rgba(shared_data):
    from skimage.transform import rescale

    total = Score()
    for i, (name, rgb, boxes, ignore) in enumerate(_bccd(shared_data, step=29)):
        if i % 2:
            img = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
            s = 1.0
        else:
            s = 0.5
            img = (rescale(rgb, s, channel_axis=-1, anti_aliasing=True) * 255).astype(np.uint8)
        scaled = [tuple(v * s for v in b) for b in boxes]
        total = total + score_centroids(centroids_of(segment_wbc(img)), scaled, ignore, tag=name)
    assert total.recall >= 0.9 and total.precision >= 0.9, total.summary()


def test_crops_without_white_cells_give_nothing(shared_data):
    """Bands of BCCD fields away from every white cell: (almost) nothing is found.

    One band (BloodImage_00110) holds a dense clump of platelets that is taken for a
    small white cell; it is the one known false object of the whole trainval split.
    """
    found = 0
    for _, rgb, boxes, ignore in _bccd(shared_data, step=15):
        occupied = np.zeros(rgb.shape[1], bool)
        for x0, _, x1, _ in boxes + ignore:
            occupied[max(0, int(x0) - 10) : int(x1) + 10] = True
        free = np.flatnonzero(~occupied)
        if free.size < 200:
            continue
        # the widest free band of columns
        runs = np.split(free, np.flatnonzero(np.diff(free) > 1) + 1)
        band = max(runs, key=len)
        if len(band) < 200:
            continue
        found += int(segment_wbc(rgb[:, band[0] : band[-1] + 1]).max())
    assert found <= 1


def test_pbc_cellavision_crops_one_central_cell(shared_data):
    """Another microscope (CellaVision, PBC data set): the centred white cell is one object."""
    from skimage.io import imread

    for cls in ("neutrophil", "lymphocyte", "monocyte", "eosinophil"):
        for path in sorted((shared_data / "smear" / "pbc" / cls).glob("*.png"))[:3]:
            labels = segment_wbc(imread(path))
            h, w = labels.shape
            c = centroids_of(labels)
            central = [(y, x) for y, x in c if abs(y - h / 2) < h / 4 and abs(x - w / 2) < w / 4]
            assert len(central) == 1, (path.name, c)


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_smear_one_object_per_white_cell(seed):
    from napari_nucleus_ai.samples.smear import simulate_smear

    sim = simulate_smear(seed=seed, shape=(480, 640), n_wbc=4)
    labels, info = segment_wbc(sim.image, return_info=True)
    truth = sim.cells
    assert info["scale_from"] == "red cells"
    assert info["pixel_size_um"] == pytest.approx(sim.pixel_size_um, rel=0.35)
    # every true cell contains exactly one detected centroid, no object outside cells
    cents = centroids_of(labels)
    hits = [int(truth[int(round(y)), int(round(x))]) for y, x in cents]
    assert sorted(hits) == sorted(np.unique(truth[truth > 0]).tolist())
    # same result when the pixel size is given
    given = segment_wbc(sim.image, pixel_size_um=sim.pixel_size_um)
    assert given.max() == labels.max()


def test_eosinophil_granules_are_part_of_the_cell():
    """An eosinophil's orange granules carry no nuclear-stain colour: the granule signal grows
    the cell into them (without it the object is about the nucleus alone, IoU ~0.25)."""
    from napari_nucleus_ai.samples.smear import simulate_smear

    ious = {True: [], False: []}
    for seed in (0, 1, 2):
        sim = simulate_smear(seed=seed, n_wbc=3, classes=("eosinophil",))
        for on in ious:
            labels = segment_wbc(sim.image, sim.pixel_size_um, **({} if on else {"granule_od": 5}))
            for lab in np.unique(sim.cells[sim.cells > 0]):
                truth = sim.cells == lab
                ids, counts = np.unique(labels[truth & (labels > 0)], return_counts=True)
                obj = labels == ids[np.argmax(counts)]
                ious[on].append((obj & truth).sum() / (obj | truth).sum())
    assert np.median(ious[True]) > 0.6 > 0.4 > np.median(ious[False])


def test_blank_and_red_cell_only_fields_are_empty():
    from napari_nucleus_ai.samples.smear import simulate_smear

    with pytest.raises(InputError, match="single colour"):
        segment_wbc(np.full((100, 120, 3), 220, np.uint8))
    sim = simulate_smear(seed=5, shape=(300, 400), n_wbc=0)
    assert segment_wbc(sim.image).max() == 0


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((1, 1, 3), np.uint8),
        np.zeros((64, 64, 5), np.uint8),
        np.zeros((4, 64, 64, 3), np.uint8),
        np.full((64, 64, 3), np.inf),
        np.full((64, 64, 3), 1e20),
        np.full((64, 64, 3), -3.0),
    ],
    ids=["empty", "1x1", "5-channel", "4d", "inf", "huge", "negative"],
)
def test_bad_input_one_line_error(bad):
    with pytest.raises(InputError) as e:
        segment_wbc(bad)
    assert "\n" not in str(e.value)


def test_float_and_16bit_inputs_match_uint8():
    from napari_nucleus_ai.samples.smear import simulate_smear

    img = simulate_smear(seed=3, shape=(360, 480), n_wbc=2).image
    ref = segment_wbc(img)
    assert ref.max() == 2
    assert segment_wbc(img / 255.0).max() == 2
    assert segment_wbc(img.astype(np.uint16) * 257).max() == 2


def test_bad_parameters():
    img = np.full((64, 64, 3), 200, np.uint8)
    with pytest.raises(InputError, match="unknown"):
        segment_wbc(img, nucleus_threshold=3)
    with pytest.raises(InputError, match="pixel size"):
        segment_wbc(img, pixel_size_um=-1)


def test_big_low_magnification_field_measures_its_own_scale():
    """A 40x-like field (0.25 um/px, red cells ~30 px) bigger than a camera frame."""
    from napari_nucleus_ai.samples.smear import simulate_smear

    sim = simulate_smear(seed=3, shape=(700, 900), pixel_size_um=0.25, n_wbc=4)
    labels, info = segment_wbc(sim.image, return_info=True)
    assert info["pixel_size_um"] == pytest.approx(0.25, rel=0.3)
    hits = sorted(int(sim.cells[int(y), int(x)]) for y, x in centroids_of(labels))
    assert hits == list(range(1, int(sim.cells.max()) + 1))
