"""Make docs/images/infection.png: the Infection dock on the synthetic Hoechst time-lapse.

Run: ``NAPARI_NUCLEUS_AI_SYNC=1 xvfb-run -a .venv/bin/python benchmarks/infection_screenshot.py MODEL [--out PNG]``

The demo step (``demo_infection``) is run with the infection model package MODEL
(trained with ``napari_nucleus_ai.infection.score.train_infection_model``); the view
then jumps to a track predicted lytic, at its prediction frame.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument(
        "--out", default=str(Path(__file__).resolve().parents[1] / "docs/images/infection.png")
    )
    args = ap.parse_args()
    import napari

    from napari_nucleus_ai.samples.timelapse import sample_layers
    from napari_nucleus_ai.widgets.infection import InfectionWidget

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 900)
    img, meta, _ = sample_layers(n_frames=40, shape=(320, 320), seed=2)[0]
    layer = viewer.add_image(img, **meta)
    dock = InfectionWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Infection", area="right")
    dock.layer.value = layer
    dock.demo_model.value = False
    dock.model.value = args.model
    dock._run()
    table = dock.result.table
    lytic = table[table["lytic_predicted"].fillna(False).astype(bool) & table["end"].eq("vanished")]
    lytic = lytic.sort_values("n_frames", ascending=False)
    pick = lytic.iloc[0] if len(lytic) else table[table["infected"]].iloc[0]
    dock.track.value = int(pick["track_id"])
    t = (
        int(pick["t_predict"])
        if "t_predict" in pick and pick["t_predict"] == pick["t_predict"]
        else int(pick["t_start"])
    )
    viewer.dims.set_current_step(0, t)
    viewer.camera.zoom = 3.2
    napari.qt.get_qapp().processEvents()
    viewer.screenshot(args.out, canvas_only=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
