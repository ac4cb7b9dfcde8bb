"""The ``napari-nucleus-ai`` command line.

Each subcommand lives in its own module in this package with ``HELP`` (one
line), ``add_arguments(parser)`` and ``run(args) -> int``. Command modules import
heavy libraries (torch, napari, Qt) inside ``run`` only, so ``--help`` is fast.
Errors from the core (:class:`~napari_nucleus_ai.core.errors.NucleusAIError`,
``OSError``) are printed as one line naming the file, with exit status 1; an option
out of its range (:class:`~napari_nucleus_ai.core.errors.UsageError`, checked by
:mod:`._params` before any work) exits with status 2, as argparse's own usage errors do.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from napari_nucleus_ai import __version__

# name -> module (relative to this package); order is the order in --help.
COMMANDS = {
    "demo": ".demo",
    "info": ".info",
    "render": ".render",
    "measure": ".measure",
    "segment": ".segment",
    "import-dataset": ".import_dataset",
    "train": ".train",
    "predict": ".predict",
    "classify": ".classify",
    "generate": ".generate",
    "report": ".report",
    "export-trainset": ".export_trainset",
    "retrain": ".retrain",
    "track": ".track",
    "batch": ".batch",
    "export-bioimageio": ".export_bioimageio",
    "import-bioimageio": ".import_bioimageio",
    "export-geojson": ".export_geojson",
    "export-zarr": ".export_zarr",
}

PROG = "napari-nucleus-ai"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line parser; with ``only``, that one subcommand (a run needs no other).

    Building a subcommand imports its module and whatever its options list (dataset
    kinds, model names...), so a run builds only the command it runs.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Published cell-AI methods at the microscope: read STORM localizations, "
        "smears and nuclear stains, segment, classify, review and retrain.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        if only is not None and name != only:
            continue
        mod = importlib.import_module(modname, __name__)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from napari_nucleus_ai.core.errors import NucleusAIError, UsageError, one_line

    parser = build_parser(_command_of(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from napari_nucleus_ai.cli._localization_options import localization_options
    from napari_nucleus_ai.cli._params import check_args

    if not args.debug:  # readers' library warnings are not messages for the user
        import logging

        logging.getLogger("tifffile").setLevel(logging.CRITICAL)
    try:
        check_args(args.command, args)  # every option in its range before any work
        with localization_options(args):  # --camera-pixel / --columns for every read
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (NucleusAIError, OSError) as e:
        if args.debug:
            raise
        print(f"{PROG}: error: {one_line(e, getattr(e, 'filename', None))}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1


def _command_of(argv) -> str | None:
    """The subcommand ``argv`` runs, or None (no command, or help / version asked first)."""
    for token in argv:
        if token in ("-h", "--help", "--version"):
            return None
        if token.startswith("-"):  # --debug
            continue
        return token if token in COMMANDS else None
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
