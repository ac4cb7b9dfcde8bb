"""``napari-nucleus-ai track STACK --out DIR [--model MODEL]``: track nuclei, score infection."""

from __future__ import annotations

HELP = "track nuclei in a nuclear-stain time-lapse; with --model, infection per nucleus and lysis per track"


def add_arguments(p) -> None:
    p.add_argument("stack", metavar="STACK", help="time-lapse (TIFF/OME-TIFF/ImageJ, T x Y x X)")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="writes tracks.csv, nuclei.csv, labels.tif (+ infection.csv)",
    )
    p.add_argument(
        "--model", metavar="MODEL", help="infection model package (classes infected/uninfected)"
    )
    p.add_argument(
        "--lytic",
        metavar="LYTIC.json",
        help="lytic predictor (default: the one shipped, trained on simulated movies; 'none' to skip)",
    )
    p.add_argument("--pixel-size-um", type=float, help="pixel size when the file does not say")
    p.add_argument(
        "--frame-interval-h", type=float, help="hours between frames when the file does not say"
    )
    p.add_argument(
        "--channel",
        type=int,
        default=0,
        help="channel index of the nuclear stain (multichannel files)",
    )
    p.add_argument(
        "--max-step-um", type=float, default=8.0, help="largest nucleus movement per frame"
    )
    p.add_argument(
        "--split-distance-um",
        type=float,
        default=10.0,
        help="largest mother-daughter distance (0 = no divisions)",
    )
    p.add_argument(
        "--max-gap", type=int, default=2, help="frames a nucleus may be missed and still linked"
    )
    p.add_argument("--no-drift", action="store_true", help="do not estimate and remove stage drift")
    p.add_argument(
        "--device", default=None, help="auto, cuda, mps or cpu (default: the plugin setting)"
    )
    p.add_argument("--batch-size", type=int, default=256)


def time_stack(img, channel: int = 0):
    """``(stack (T, Y, X), axes note)`` from an :class:`ImageData`: T (or Z / I as time), one channel."""
    from napari_nucleus_ai.core.errors import InputError

    data, axes = img.levels[0], img.axes
    if img.rgb:
        raise InputError(img.path, "is an RGB image, not a nuclear-stain time-lapse")
    tax = next((a for a in "TZIQ" if a in axes), None)
    if tax is None or "Y" not in axes or "X" not in axes:
        raise InputError(img.path, f"needs time, Y and X axes; the file has {axes}")
    index = []
    for a, n in zip(axes, data.shape, strict=True):
        if a in (tax, "Y", "X"):
            index.append(slice(None))
        elif a == "C":
            if not 0 <= channel < n:
                raise InputError(img.path, f"channel {channel} out of range (the file has {n})")
            index.append(channel)
        elif n == 1:
            index.append(0)
        else:
            raise InputError(img.path, f"cannot track axes {axes}: axis {a} has {n} planes")
    stack = data[tuple(index)]
    kept = [a for a in axes if a in (tax, "Y", "X")]
    order = [kept.index(a) for a in (tax, "Y", "X")]
    if order != [0, 1, 2]:
        stack = stack.transpose(order)
    return stack, tax


def run(args) -> int:
    import time
    from pathlib import Path

    import numpy as np

    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.core.files import atomic_write
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.images import read_image
    from napari_nucleus_ai.infection.track import track_stack, write_tracks

    t0 = time.perf_counter()
    img = read_image(args.stack)
    stack, tax = time_stack(img, args.channel)
    if hasattr(stack, "compute") and stack.nbytes < 2**31:
        stack = np.asarray(stack)
    px = args.pixel_size_um or (img.pixel_size_um[0] if img.pixel_size_um else None)
    dt = args.frame_interval_h or (img.metadata.get("time_step_s", 0) / 3600.0) or None
    notes = []
    if px is None:
        notes.append("pixel size unknown: distances in pixels (give --pixel-size-um)")
    if dt is None:
        dt = 1.0
        notes.append("frame interval unknown: 1 h assumed (give --frame-interval-h)")
    if tax != "T":
        notes.append(f"axis {tax} taken as time")
    if stack.shape[0] < 2:
        raise InputError(args.stack, f"has {stack.shape[0]} time point; tracking needs at least 2")

    def show(p):
        print(f"\r{p.message:<40} {p.done}/{p.total}", end="", flush=True)

    result = run_sync(
        track_stack(
            stack,
            px,
            max_step_um=args.max_step_um,
            split_distance_um=args.split_distance_um or None,
            max_gap=args.max_gap,
            correct_drift=not args.no_drift,
        ),
        show,
    )
    print()
    out = Path(args.out)
    tracks = result.tracks
    written = write_tracks(result, out, pixel_size_um=px)
    n_tracks = tracks["track_id"].nunique() if len(tracks) else 0
    print(f"{n_tracks} tracks, {int((tracks.drop_duplicates('track_id')['parent_id'] > 0).sum())} daughter tracks, "
          f"{result.seconds_per_frame:.2f} s/frame -> {written['tracks']}, {written['nuclei']}, {written['labels']}")  # fmt: skip
    if args.model:
        from napari_nucleus_ai.infection.score import infection_table, predict_infection
        from napari_nucleus_ai.models.package import load_model

        model = load_model(args.model)
        if args.device:
            from napari_nucleus_ai.classify.predict import resolve_device

            model.to(resolve_device(args.device))
        tracks = run_sync(
            predict_infection(
                stack, tracks, result.labels, model, pixel_size_um=px, batch_size=args.batch_size
            ),
            show,
        )
        print()
        table = infection_table(tracks, stack.shape[1:], stack.shape[0], frame_interval_h=dt)
        if (args.lytic or "").lower() != "none":
            from napari_nucleus_ai.infection.lytic import (
                LyticModel,
                default_model_path,
                predict_lytic,
            )

            lytic = LyticModel.load(args.lytic or default_model_path())
            table = predict_lytic(tracks, table, lytic, frame_interval_h=dt)
            if abs(lytic.frame_interval_h - dt) > 1e-6:
                notes.append(
                    f"the lytic model was trained at {lytic.frame_interval_h:g} h per frame; its "
                    f"{lytic.window_frames}-frame window is {lytic.window_frames * dt:g} h here"
                )
        # tracks.csv stays the five columns; p_infected and the features go to nuclei.csv
        write_tracks(result, out, nuclei=tracks, write_labels=False)
        with atomic_write(out / "infection.csv", "w", newline="") as fh:
            table.to_csv(fh, index=False, float_format="%.4g")
        n_inf = int(table["infected"].sum())
        msg = f"{n_inf} of {len(table)} tracks infected"
        if "lytic_predicted" in table:
            msg += f", {int(table['lytic_predicted'].fillna(False).sum())} predicted lytic"
        print(f"{msg} -> {out / 'infection.csv'}")
    for note in notes:
        print(f"note: {note}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
