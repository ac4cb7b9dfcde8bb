"""The domain-shift score's descriptor terms: a class left out of training stands out."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.models import trust
from napari_nucleus_ai.models.uncertainty import auroc

N_DESC, N_IMG = 24, 600
MIX = np.random.default_rng(99).normal(size=(8, N_IMG))


def _cells(rng, centres, label: int, n: int) -> np.ndarray:
    """``n`` cells of class ``label``: a descriptor around its centre, then many strongly
    correlated features that vary from cell to cell whatever the class (like frozen
    ImageNet features that see the background: large, uninformative here)."""
    desc = centres[label] + 0.35 * rng.normal(size=(n, N_DESC))
    img = 3.0 * rng.normal(size=(n, 8)) @ MIX + 0.1 * rng.normal(size=(n, N_IMG))
    return np.concatenate([desc, img], 1)


def _split(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, N_DESC))
    seen = range(4)  # class 4 is never trained on
    train = np.concatenate([_cells(rng, centres, c, 30) for c in seen])
    y = np.repeat(np.arange(4), 30)
    held = np.concatenate([_cells(rng, centres, c, 8) for c in seen])
    unseen = _cells(rng, centres, 4, 20)
    probs = np.full((len(held), 4), 0.05)
    probs[np.arange(len(held)), np.repeat(np.arange(4), 8)] = 0.85
    return train, y, held, probs, unseen


def _auroc(dom, held, probs, unseen) -> float:
    p_unseen = np.full((len(unseen), 4), 0.05)
    p_unseen[:, 0] = 0.85  # confidently called class 0: the entropy cannot tell
    s_held = trust.domain_scores(held, probs, dom)
    s_unseen = trust.domain_scores(unseen, p_unseen, dom)
    return auroc(np.r_[s_held, s_unseen], np.r_[np.zeros(len(held)), np.ones(len(unseen))])


def test_descriptor_terms_flag_an_unseen_class_that_all_features_miss():
    train, y, held, probs, unseen = _split()
    with_desc = trust.fit_domain(train, y, held, probs, components=8, descriptor=N_DESC)
    without = trust.fit_domain(train, y, held, probs, components=8)
    assert set(with_desc["standardise"]) == set(trust.TERMS)
    assert set(without["standardise"]) == set(trust.TERMS_NO_DESCRIPTOR)
    new, old = _auroc(with_desc, held, probs, unseen), _auroc(without, held, probs, unseen)
    assert new >= 0.9, (new, old)
    assert new > old  # the noise features drown the class in the all-feature distance
    # held-back seen cells pass at about the card's quantile
    s = trust.domain_scores(held, probs, with_desc)
    assert np.mean(s > with_desc["threshold"]) <= 0.1


def test_the_card_keeps_at_most_a_sample_of_training_cells_as_neighbours(monkeypatch):
    train, y, held, probs, _ = _split(1)
    monkeypatch.setattr(trust, "KNN_REFERENCE", 50)
    dom = trust.fit_domain(train, y, held, probs, components=8, descriptor=N_DESC)
    ref = np.asarray(dom["descriptor"]["reference"])
    assert ref.shape == (50, N_DESC)
    trust.validate_trust({"domain": dom})


def test_validation_refuses_descriptor_terms_without_their_numbers():
    train, y, held, probs, _ = _split(2)
    dom = trust.fit_domain(train, y, held, probs, components=8, descriptor=N_DESC)
    broken = copy.deepcopy(dom)
    del broken["descriptor"]
    with pytest.raises(InputError, match="descriptor"):
        trust.validate_trust({"domain": broken}, "m.zip")
    odd = copy.deepcopy(dom)
    odd["descriptor"]["reference"] = [[0.0, 1.0]]
    with pytest.raises(InputError, match="reference shape"):
        trust.validate_trust({"domain": odd}, "m.zip")
    unknown = copy.deepcopy(dom)
    unknown["standardise"]["energy"] = {"median": 0.0, "scale": 1.0}
    with pytest.raises(InputError, match="terms"):
        trust.validate_trust({"domain": unknown}, "m.zip")
