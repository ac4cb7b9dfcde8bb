"""Virus infection from the nuclear stain alone: tracking, per-nucleus infection, lytic outcome.

- :mod:`.track`: segment and link nuclei over time (laptrack).
- :mod:`.score`: infection probability per nucleus and frame, :func:`analyse_timelapse`.
- :mod:`.lytic`: the lytic / non-lytic outcome per track and its lead time.
- :mod:`.evaluate`: the pipeline against simulated ground truth.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "track": ["TrackingResult", "track_stack", "write_tracks"],
        "score": [
            "InfectionResult",
            "analyse_timelapse",
            "predict_infection",
            "train_infection_model",
        ],
        "lytic": ["LyticModel", "predict_lytic"],
        "evaluate": ["run_pipeline"],
    },
)
