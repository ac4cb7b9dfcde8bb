"""What the Generative dock runs (Qt-free generators, also usable from scripts).

:func:`generate_grid_gen` -> a grid image of synthetic cells of one class;
:func:`counterfactual_gen` -> the counterfactual map of one segmented cell and
its re-drawing as the runner-up class, with the ``scale``/``translate`` that put
them over (and beside) the cell in the viewer.
"""

from __future__ import annotations

from napari_nucleus_ai.core.errors import InputError


def load_diffusion(model, device: str | None = None):
    """``(package, DiffusionClassifier)`` for a package path or loaded package."""
    from napari_nucleus_ai.core.device import resolve_device
    from napari_nucleus_ai.models.diffusion.kind import as_classifier
    from napari_nucleus_ai.models.package import as_package

    package = as_package(model)
    if package.card["kind"] != "diffusion":
        raise InputError(
            package.path,
            f"this is a {package.card['kind']!r} model; generation needs a diffusion model",
        )
    package.to(resolve_device(device))
    return package, as_classifier(package)


def generate_grid_gen(
    model,
    class_name: str,
    n: int = 16,
    *,
    steps: int = 50,
    guidance: float = 1.0,
    seed: int = 0,
    device: str | None = None,
):
    """Synthetic cells of ``class_name`` as one uint8 grid image (yields Progress)."""
    from napari_nucleus_ai.models.diffusion.generate import generate, grid

    _, clf = load_diffusion(model, device)
    x = yield from generate(clf, class_name, n, steps=steps, guidance=guidance, seed=seed)
    return grid(x)


def counterfactual_gen(
    model,
    image,
    labels,
    label: int,
    *,
    scale=(1.0, 1.0),
    translate=(0.0, 0.0),
    trials: int | None = None,
    strength: float = 0.5,
    device: str | None = None,
):
    """Counterfactual of cell ``label``: error-difference map and the cell as the runner-up.

    Returns a dict with ``map`` (S, S float, positive = looks like its own class),
    ``map_kwargs`` (scale/translate over the cell), ``image`` (uint8 re-drawing),
    ``image_kwargs`` (placed right of the cell), ``source``, ``target``, ``p``.
    """
    from napari_nucleus_ai.models.diffusion.generate import counterfactual, to_uint8
    from napari_nucleus_ai.models.diffusion.layers import cell_window, placed_over_window
    from napari_nucleus_ai.models.inputs import prepare

    package, clf = load_diffusion(model, device)
    crop, origin, side = cell_window(
        image, labels, int(label), card=package.card, image_scale=float(scale[-1])
    )
    x0 = prepare([crop], package.card)[0][0]
    res = yield from counterfactual(clf, x0, trials=trials, strength=strength)
    redrawn = to_uint8(res["image"][None])[0]
    beside = (origin[0], origin[1] + side + max(2, side // 10))
    return {
        **res,
        "label": int(label),
        "map_kwargs": placed_over_window(res["map"], origin, side, scale, translate),
        "image": redrawn,
        "image_kwargs": placed_over_window(redrawn, beside, side, scale, translate),
    }
