"""Deterministic simulators for sample data, demos and tests (no downloads), and the real sample files."""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "storm": ["simulate_nucleus", "simulate_field", "simulate_blinking"],
        "smear": ["simulate_smear", "simulate_smear_field", "simulate_wbc_crop"],
        "timelapse": ["simulate_timelapse"],
    },
)
