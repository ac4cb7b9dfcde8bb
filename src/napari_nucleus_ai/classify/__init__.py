"""Classification of cells: training sets, training, inference on crops and on segmented images.

- :mod:`.trainset`: class folders and labelled layers -> :class:`TrainingSet`.
- :mod:`.train`: :func:`train_gen` / :func:`train` -> a model package.
- :mod:`.predict`: :func:`predict_items` on crops or nuclei, :func:`predict_paths` on files,
  :func:`saliency`.
- :mod:`.cells`: :func:`classify_cells` -- every cell of a Labels image, joined into the cell table.
- :mod:`.demo_models`: the small models the demo and docks offer.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "trainset": [
            "TrainingSet",
            "load_class_folders",
            "from_labelled_image",
            "stratified_split",
        ],
        "train": ["TrainResult", "train", "train_gen"],
        "predict": [
            "predict_items",
            "predict_items_gen",
            "predict_paths",
            "predict_paths_gen",
            "saliency",
        ],
        "cells": ["ClassifyResult", "classify_cells", "classify_cells_gen"],
    },
)
