"""``napari-nucleus-ai generate MODEL --class NAME --out GRID.png``: synthetic cells from a diffusion model."""

from __future__ import annotations

HELP = "draw synthetic cells of one class from a diffusion model package into a grid image"


def add_arguments(p) -> None:
    p.add_argument("model", help="diffusion model package (train DATA --arch diffusion)")
    p.add_argument("--class", dest="klass", required=True, help="class name as in the model card")
    p.add_argument(
        "--out", required=True, metavar="GRID.png", help="grid image to write (PNG or TIFF)"
    )
    p.add_argument("-n", "--n", type=int, default=16, help="number of cells (default 16)")
    p.add_argument("--steps", type=int, default=50, help="DDIM denoising steps (default 50)")
    from napari_nucleus_ai.models.diffusion.generate import GUIDANCE

    p.add_argument(
        "--guidance",
        type=float,
        default=GUIDANCE,
        help=f"classifier-free guidance weight; 0 = plain conditional model (default {GUIDANCE:g})",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--device",
        default=None,
        help="auto, cuda, cuda:N, mps or cpu (default: the plugin setting)",
    )


def run(args) -> int:
    import imageio.v3 as iio

    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.core.files import atomic_path
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.tasks import generate_grid_gen, load_diffusion

    package, _ = load_diffusion(args.model, args.device)
    if args.klass not in package.classes:
        raise InputError(
            args.model, f"no class {args.klass!r}; the model has {', '.join(package.classes)}"
        )
    if args.n < 1 or args.steps < 1:
        raise InputError(None, "--n and --steps must be at least 1")
    img = run_sync(
        generate_grid_gen(
            package,
            args.klass,
            args.n,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            device=args.device,
        )
    )
    with atomic_path(args.out) as tmp:
        iio.imwrite(tmp, img)
    print(f"{args.out}: {args.n} synthetic {args.klass} cells, {img.shape[1]} x {img.shape[0]} px")
    return 0
