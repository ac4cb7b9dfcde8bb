"""The one-command demo: the viewer with sample data, the plugin's docks and their results."""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "viewer": ["DEMO_STEPS", "build_demo"],
    },
)
