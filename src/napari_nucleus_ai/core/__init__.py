"""What every other layer stands on: errors, progress, files, settings, the compute device.

Nothing here imports torch, Qt or napari at import time.

- :mod:`.errors`: :class:`InputError` (one line naming the file and the problem),
  :class:`UsageError` (a bad option: exit status 2), :class:`DeviceError`,
  :class:`Cancelled`, :func:`one_line`.
- :mod:`.params`: :class:`Param` schemas and :func:`validate` (checked before any work);
  input bounds (:data:`MAX_COORD_NM`, :func:`check_allocation`).
- :mod:`.progress`: :class:`Progress` / :class:`EpochProgress` from core generators,
  :func:`run_sync` to drive them without a GUI.
- :mod:`.files`: :func:`atomic_write` (nothing half-written), :func:`check_readable`.
- :mod:`.settings`: the plugin's persistent settings (device, author).
- :mod:`.device`: ``auto``/``cuda``/``mps``/``cpu`` selection shared by every model user.
- :mod:`.units`: lengths in nm, um and px, in one table.
- :mod:`.palette`: class colours, the same in every dock and report.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "errors": [
            "Cancelled",
            "DeviceError",
            "InputError",
            "NucleusAIError",
            "UsageError",
            "one_line",
        ],
        "params": ["MAX_COORD_NM", "Param", "check_allocation", "validate"],
        "progress": ["EpochProgress", "Progress", "run_sync"],
        "files": ["atomic_path", "atomic_write", "check_readable"],
        "settings": ["get_setting", "load_settings", "set_setting"],
        "device": ["available_devices", "describe_device", "resolve_device", "select_device"],
    },
)
