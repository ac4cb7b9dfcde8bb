"""The range of every numeric command line option, checked by :func:`cli.main` before ``run``.

The schemas themselves are :data:`napari_nucleus_ai.core.params.COMMANDS` (one
:class:`~napari_nucleus_ai.core.params.Param` per option, its ``key`` the argparse
``dest``), where the docks take their limits from too; options a command does not
have are not checked. A bad value is one line naming the option, the value and what
is allowed, with exit status 2 (argparse already refuses values of the wrong type,
also with 2).
"""

from __future__ import annotations

from napari_nucleus_ai.core.params import COMMANDS, TTA

#: The schemas by command (the same objects as ``core.params.COMMANDS``).
SCHEMAS = COMMANDS
__all__ = ["SCHEMAS", "TTA", "check_args"]


def check_args(command: str, args) -> None:
    """Raise :class:`~napari_nucleus_ai.core.errors.UsageError` for an option out of its range."""
    from napari_nucleus_ai.core.params import validate

    schema = SCHEMAS.get(command)
    if not schema:
        return
    values = vars(args)
    present = [p for p in schema if p.dest in values]
    checked = validate(present, {p.dest: values[p.dest] for p in present}, command)
    for key, value in checked.items():
        setattr(args, key, value)
