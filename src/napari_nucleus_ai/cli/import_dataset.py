"""``napari-nucleus-ai import-dataset KIND SOURCE --out DATA``: public data -> training folder."""

from __future__ import annotations

import sys

HELP = "turn a public data set (Matek, PBC, BCCD/VOC, BloodMNIST, Raabin, STORM files) into a training folder"

EPILOG = """kinds:
  matek          AML-Cytomorphology_LMU (TCIA): TIFF tree + annotations.dat (--annotation)
  pbc            PBC (Acevedo 2020): class folders; --fine uses the file-name prefixes
  voc, bccd      Pascal-VOC boxes: crops of --size px around --objects boxes
  bloodmnist     BloodMNIST .npz (--split train|val|test)
  raabin         Raabin-WBC: Train/TestA/TestB class folders (--split)
  localizations  folder of localization files + --labels-csv (AINU-style)
  folders        any <class>/<image> tree, folder names kept as classes

The output is DATA/<class>/<file> plus _manifest.json (source, licence, counts per
class, annotation used), _files.csv and _skipped.csv. See docs/datasets.md."""


def add_arguments(p) -> None:
    import argparse

    from napari_nucleus_ai.datasets import KINDS

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("kind", choices=list(KINDS), metavar="KIND", help="layout of SOURCE (see below)")
    p.add_argument("source", nargs="?", metavar="SOURCE", help="the downloaded data set")
    p.add_argument("--out", metavar="DATA", help="training folder to create")
    g = p.add_argument_group("classes")
    g.add_argument(
        "--labels",
        choices=["native", "common", "code"],
        default="native",
        help="class names: this plugin's names (default), the shared coarse vocabulary "
        "used to compare data sets, or the source's own codes",
    )
    g.add_argument("--vocabulary", metavar="CSV", help="your vocabulary CSV over the shipped one")
    g.add_argument(
        "--show-vocabulary",
        action="store_true",
        help="print the vocabulary rows for KIND as CSV (a start for your own) and exit",
    )
    g = p.add_argument_group("output")
    g.add_argument(
        "--link",
        choices=["copy", "hardlink", "symlink"],
        default="copy",
        help="how source files get into DATA (default copy)",
    )
    g.add_argument(
        "--format",
        dest="fmt",
        choices=["copy", "png", "csv"],
        default="copy",
        help="keep files as they are (default); png: re-encode images as RGB PNG; "
        "csv: rewrite localization files as ThunderSTORM CSV in nm",
    )
    g.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="do not decode every image / read every localization file first",
    )
    g.add_argument(
        "--strict", action="store_true", help="stop at the first problem instead of skipping it"
    )
    g.add_argument(
        "--overwrite", action="store_true", help="replace DATA if import-dataset made it"
    )
    g.add_argument("--quiet", action="store_true", help="no progress, only the summary and errors")
    g.add_argument("--licence", help="licence for the manifest (overrides the known one)")
    g.add_argument("--citation", help="citation for the manifest")
    g = p.add_argument_group("kind options")
    g.add_argument(
        "--annotation",
        choices=["original", "first", "second", "agreed", "majority"],
        help="matek: which annotation to trust (default original)",
    )
    g.add_argument("--annotations", metavar="FILE", help="matek: annotations.dat if not in SOURCE")
    g.add_argument(
        "--fine",
        action="store_true",
        default=None,
        help="pbc: classes from file-name prefixes (SNE/BNE, PMY/MY/MMY...)",
    )
    g.add_argument(
        "--split", help="bloodmnist: train|val|test; raabin/pbc: a split folder (Train, TestA)"
    )
    g.add_argument("--objects", help="voc: box names to crop, comma-separated (default WBC)")
    g.add_argument("--size", type=int, help="voc: crop size in pixels (default 256)")
    g.add_argument(
        "--fit-box",
        action="store_true",
        default=None,
        help="voc: scale boxes larger than --size into the crop",
    )
    g.add_argument(
        "--extra-boxes", metavar="CSV", help="voc: more boxes (image,xmin,ymin,xmax,ymax,kind)"
    )
    g.add_argument(
        "--image-set", metavar="TXT", help="voc: only the fields listed (e.g. trainval.txt)"
    )
    g.add_argument(
        "--labels-csv",
        metavar="CSV",
        help="localizations: file,label table; voc: Image,Category per field",
    )


def run(args) -> int:
    from napari_nucleus_ai.cli._progress import ProgressPrinter
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.datasets import import_dataset, kind_module, kind_options

    if args.show_vocabulary:
        from napari_nucleus_ai.datasets.harmonise import load_vocabulary

        vocab = load_vocabulary(args.vocabulary)
        datasets = {"pbc": ["pbc", "pbc-prefix"], "bccd": ["voc"]}.get(args.kind, [args.kind])
        text = vocab.to_csv(datasets[0])
        for extra in datasets[1:]:
            text += vocab.to_csv(extra).split("\n", 1)[1]
        sys.stdout.write(text)
        return 0
    if not args.source or not args.out:
        raise InputError(None, "import-dataset needs SOURCE and --out DATA")
    names = (
        "annotation",
        "annotations",
        "fine",
        "split",
        "objects",
        "size",
        "fit_box",
        "extra_boxes",
        "image_set",
        "labels_csv",
    )
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    allowed = kind_options(args.kind)
    wrong = [n for n in given if n not in allowed]
    if wrong:
        flags = ", ".join("--" + n.replace("_", "-") for n in wrong)
        raise InputError(
            None,
            f"{flags} does not apply to {args.kind} (it takes: "
            + ", ".join("--" + n.replace("_", "-") for n in allowed)
            + ")",
        )
    kind_module(args.kind)
    bar = ProgressPrinter("import-dataset", quiet=args.quiet)
    report = run_sync(
        import_dataset(
            args.kind,
            args.source,
            args.out,
            labels=args.labels,
            vocabulary=args.vocabulary,
            link=args.link,
            fmt=args.fmt,
            verify=args.verify,
            strict=args.strict,
            overwrite=args.overwrite,
            info={"licence": args.licence, "citation": args.citation},
            **given,
        ),
        on_progress=bar,
    )
    bar.close()
    print(report.summary())
    # files that could not be read are failures (exit 2, as batch); other skips are choices
    failed = [s for s in report.skipped if s.category in FAILED_SKIPS]
    for s in failed[:20]:
        print(f"  failed: {s.path}: {s.detail}", file=sys.stderr)
    if len(failed) > 20:
        print(f"  ... and {len(failed) - 20} more (see _skipped.csv)", file=sys.stderr)
    return 2 if failed else 0


FAILED_SKIPS = ("unreadable", "not an image", "missing file")
