"""Nuclei in nuclear stains: touching nuclei split, empty fields stay empty, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

from _segment_data import empty_field, nuclei_image
from napari_nucleus_ai.core.errors import Cancelled, InputError
from napari_nucleus_ai.core.progress import Progress, run_sync
from napari_nucleus_ai.segment.nuclei import segment_nuclei, segment_nuclei_stack


def _score(labels, centres):
    hits = [int(labels[int(round(y)), int(round(x))]) for y, x in centres]
    return hits


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_touching_nuclei_split_one_object_each(seed):
    img, centres = nuclei_image(seed, touching_pairs=3, singles=6)
    labels = segment_nuclei(img)
    assert labels.dtype == np.int32 and labels.shape == img.shape
    hits = _score(labels, centres)
    assert 0 not in hits  # every nucleus found
    assert len(set(hits)) == len(centres)  # no two nuclei merged (touching pairs split)
    assert labels.max() == len(centres)  # no extra objects, no nucleus split in two


@pytest.mark.parametrize(
    "kw", [dict(r=6), dict(r=18, shape=(400, 400)), dict(gradient=300), dict(signal=150)]
)
def test_scale_gradient_and_dim_stain(kw):
    img, centres = nuclei_image(4, **kw)
    labels = segment_nuclei(img)
    hits = _score(labels, centres)
    assert 0 not in hits and len(set(hits)) == len(centres) == labels.max()


def test_sizes_in_micrometres_follow_pixel_size():
    img, centres = nuclei_image(5, r=10)
    # diameter 20 px = 10 um at 0.5 um/px: same result as estimated
    labels = segment_nuclei(img, pixel_size_um=0.5, diameter_um=10.0)
    assert labels.max() == len(centres)
    # a minimum area above every nucleus leaves nothing
    assert segment_nuclei(img, pixel_size_um=0.5, diameter_um=10.0, min_area_um2=500.0).max() == 0


def test_field_without_nuclei_is_empty():
    assert segment_nuclei(empty_field(1)).max() == 0
    with pytest.raises(InputError, match="single value"):
        segment_nuclei(np.full((64, 64), 7, np.uint16))


def test_no_split_option_keeps_pairs_together():
    img, centres = nuclei_image(0, touching_pairs=3, singles=6)
    assert segment_nuclei(img, split=False).max() == len(centres) - 3


def test_stack_per_time_point_with_progress_and_cancel():
    frames = [nuclei_image(s)[0] for s in range(3)]
    stack = np.stack(frames + [np.zeros_like(frames[0])])  # a blank frame is skipped, not an error
    seen = []
    out = run_sync(segment_nuclei_stack(stack), seen.append)
    assert out.shape == stack.shape and out.dtype == np.int32
    for t in range(3):
        assert out[t].max() == segment_nuclei(frames[t]).max() > 0
    assert out[3].max() == 0
    assert all(isinstance(p, Progress) for p in seen) and seen[-1].done == 4
    with pytest.raises(Cancelled):
        run_sync(segment_nuclei_stack(stack, cancel=lambda: True))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 10)),
        np.zeros((1, 1)),
        np.zeros((10, 10, 10)),
        np.zeros(5),
        np.full((32, 32), np.nan),
        np.full((32, 32), 1e30),
        np.array([["a"] * 16] * 16),
    ],
    ids=["empty", "1x1", "3d", "1d", "nan", "huge", "strings"],
)
def test_bad_input_one_line_error(bad):
    with pytest.raises(InputError) as e:
        segment_nuclei(bad)
    assert "\n" not in str(e.value)


def test_unknown_parameter_is_refused():
    with pytest.raises(InputError, match="unknown"):
        segment_nuclei(np.zeros((32, 32)), diamter_um=3)
