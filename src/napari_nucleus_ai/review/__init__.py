"""Review and correction: the corrections store, the review queue, counts, reports, export, retraining.

- :mod:`.store`: :class:`AnnotationStore`, the durable SQLite store of corrections.
- :mod:`.queue`: :class:`ReviewQueue` -- uncertain cells first, undo/redo.
- :mod:`.session`: save and restore an image's review state.
- :mod:`.counts`: differential counts; :mod:`.report`: the report (chart, HTML, CSV).
- :mod:`.export`: reviewed cells -> a training set; :mod:`.retrain`: corrections -> the next model.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "store": [
            "AnnotationStore",
            "BackgroundWriter",
            "Correction",
            "store_for_data",
            "store_path",
        ],
        "queue": ["ReviewQueue", "apply_corrections", "model_classes", "review_classes"],
        "session": ["Session", "load_session", "save_session"],
        "counts": ["differential_counts", "is_blast", "is_counted"],
        "report": ["Report", "build_report", "write_report"],
        "export": ["export_training_set", "items_from_store"],
        "retrain": ["retrain_from_items", "retrain_gen"],
    },
)
