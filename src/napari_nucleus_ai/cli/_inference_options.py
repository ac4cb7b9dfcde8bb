"""Options shared by the commands that run a model (``predict``, ``classify``; ``batch`` takes ``--adapt``)."""

from __future__ import annotations


def add_inference_options(p) -> None:
    """Device, batch size and uncertainty options, with the model card's defaults."""
    p.add_argument(
        "--device",
        default=None,
        help="auto, cuda, cuda:N, mps or cpu (default: the plugin setting)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--tta", type=int, help="test-time augmentations (default: the model card's)")
    p.add_argument(
        "--mc-dropout", type=int, help="extra MC-dropout passes (default: the model card's)"
    )
    p.add_argument(
        "--no-proposer",
        dest="proposer",
        action="store_false",
        help="diffusion models: compare every class by denoising error instead of the two "
        "the morphology proposer short-lists (slower)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="uncertainty above which a cell is 'unidentified' (default: the card's)",
    )
    add_adapt_option(p)


def add_adapt_option(p, across_inputs: bool = False) -> None:
    """``--adapt auto|off`` (``predict``, ``classify``); ``auto|folder|off`` (``batch``:
    ``across_inputs``)."""
    if across_inputs:
        p.add_argument(
            "--adapt",
            default="auto",
            choices=("auto", "folder", "off"),
            help="auto (default): adapt a package's fallback model to the cells it classified "
            "in an input, as one batch of one microscope, when they are 30 or more and most "
            "are out of its own domain (column 'adapted'); folder: to those of all inputs of "
            "one folder and image size together (many small fields); off: never",
        )
        return
    p.add_argument(
        "--adapt",
        default="auto",
        choices=("auto", "off"),
        help="auto (default): when a package's fallback model classifies 30 or more cells, "
        "most of them out of its own domain, adapt it to those cells as one batch of one "
        "microscope (column 'adapted'); off: never",
    )
