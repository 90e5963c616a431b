"""The `kseg` command (`carvana`, its first name, is the same): the pipeline's functions for use outside `dvc repro`.

kseg train [-e E] [-b B] [-l LR] [-f LOAD] [-s SCALE] [-v VAL] [--amp]   the seed's training flags
kseg predict -m MODEL -i a.jpg b.jpg [-o a.png b.png] [--viz] [--no-save] [-t T] [-s 0.5] [--rle] [--no-tta]
kseg export [-m MODEL] [-o OUT.onnx]   ONNX with dynamic batch, height and width
kseg masks [-p data/predictions] [-o DIR] [-t 0.5]   index and colour PNGs of the predictions
kseg submissions [-c SLUG] [--wait]   list your Kaggle submissions and their scores
kseg budget [-S key=value ...]   what train and predict will cost with these params, timed on this device
kseg plan [-S key=value ...]   the plan of every auto param, from the data, each value with its reason
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
import time
from pathlib import Path

from pipeline import paths
from pipeline.errors import run_stage


def _planned(p: dict, raw: Path) -> dict:
    """The params with every `auto` the plan's (computed now from the data in `raw`); without the data, the params
    as they are, and an error for an `auto` that a caller then needs."""
    from pipeline.competitions import CompetitionError, open_competition
    from pipeline.planning import plan, resolve

    if not any(resolve.value_of(p, k) == "auto" for k in resolve.PLANNED):
        return p
    try:
        comp = open_competition(raw, p["download"].competition, p["download"].hq)
    except CompetitionError:
        return p
    chosen = plan.planned(p, comp, p["download"].competition)
    return resolve.resolve(p, {k: c.value for k, c in chosen.items()})


def _budget(args: argparse.Namespace) -> None:
    from pipeline import budget, params
    from pipeline.errors import UserError
    from pipeline.planning import resolve

    p = _planned(params.load(path=args.params, overrides=args.set), args.data)
    needed = ["train.scale", "train.epochs", "train.batch_size", "predict.tta"]
    needed += [] if p["train"].model.has_encoder else ["train.model.base_channels"]
    left = [k for k in needed if resolve.value_of(p, k) == "auto"]
    if left:
        raise UserError(
            f"{left[0]} is auto, which the plan chooses from the data; {args.data} holds none yet: run `dvc repro "
            f"download`, or give it with -S {left[0]}=..."
        )
    print(budget.for_params(p, args.data))


def _plan(args: argparse.Namespace) -> None:
    """The plan of every `auto` param, with its reasons, from the data: what `dvc repro plan` would write."""
    from pipeline import params
    from pipeline.competitions import open_competition
    from pipeline.planning import plan

    p = params.load(path=args.params, overrides=args.set)
    comp = open_competition(args.data, p["download"].competition, p["download"].hq)
    print(plan.describe(plan.planned(p, comp, p["download"].competition)))


def _submissions(args: argparse.Namespace) -> None:
    from pipeline import params
    from pipeline.kaggle_api import submissions

    if args.competition is None:  # the competition of this project
        args.competition = params.load("download", path=args.params)["download"].competition
    rows = submissions.submissions(args.competition)
    while args.wait and any(r["status"] == "PENDING" for r in rows):
        print("waiting for Kaggle to score the pending submission ...")
        time.sleep(args.poll)
        rows = submissions.submissions(args.competition)
    if not rows:
        print(f"no submissions to {args.competition} yet")
        return
    receipt_path = paths.RECEIPT
    if receipt_path.is_file():  # in a project: the scores join the receipt, a metric of `dvc exp show`
        from pipeline.submission import upload

        upload.record_scores(rows, paths.SCORES)
        receipt = upload.with_score(json.loads(receipt_path.read_text()), paths.SCORES)
        receipt_path.write_text(json.dumps(receipt, indent=2) + "\n")
        if receipt.get("public_score") is not None:
            print(f"{receipt_path}: ref {receipt['ref']}, public score {receipt['public_score']}")
    print(f"{'ref':>10}  {'date':20}  {'status':8}  {'public':>8}  {'private':>8}  description")
    for r in rows:
        print(
            f"{r['ref']:>10}  {r['date'][:19]:20}  {r['status']:8}  {r['public_score']:>8}  "
            f"{r['private_score']:>8}  {r['description']}"
        )


def _train(args: argparse.Namespace) -> None:
    """The train stage's code with the seed's flags laid over params.yaml's train section."""
    from pipeline import params, training
    from pipeline.competitions import open_competition
    from pipeline.data import split
    from pipeline.errors import UserError

    p = _planned(params.load(path=args.params), args.data)
    flags = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.learning_rate,
        "init_from": args.load,
        "scale": args.scale,
        "amp": True if args.amp else None,
    }
    t = params.replace(p["train"], **{k: v for k, v in flags.items() if v is not None})
    if args.validation is not None and not 0 < args.validation < 100:
        raise UserError(f"--validation must be a percentage in (0, 100), got {args.validation}")
    comp = open_competition(args.data, p["download"].competition, p["download"].hq)
    names = comp.class_names
    if args.classes is not None and args.classes != comp.channels:
        raise UserError(
            f"--classes {args.classes} does not match the data in {args.data}: it has {len(names)} classes "
            f"({', '.join(names)}), which the model predicts with {comp.channels} output channel(s)"
        )
    s = p["split"]
    folds = max(2, round(100 / args.validation)) if args.validation else s.folds
    table = split.split_competition(comp, folds=folds, seed=s.seed, stratify=s.stratify, group=s.group)
    print(
        f"{len(table)} images, {(table['fold'] == 0).sum()} of them held out for validation "
        f"(1 fold of {folds}, grouped by {split.group_label(comp, s.group)})"
    )
    from dvclive import Live

    with Live(str(args.out / "dvclive"), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        result = training.train_fold(t, training.setup(t), comp, table, 0, args.out, live)
    print(f"best full-size validation Dice {result.best_dice:.5f} (epoch {result.best_epoch}): {args.out / 'best.pt'}")


def _check_paths(inputs: list[str], outputs: list[str], model: str, saving: bool) -> None:
    """Every input an image file, every output a new picture in a writable folder, never an input or the model,
    before any model work."""
    from pipeline.errors import UserError
    from pipeline.images import ImageError, image_size

    for source in inputs:
        path = Path(source)
        if path.is_dir():
            raise ImageError(f"{path} is a folder, not an image; give the image files (e.g. {path}/*.jpg)")
        if not path.is_file():
            raise ImageError(f"{path} does not exist; check the -i paths")
        image_size(path.read_bytes(), str(path))  # the header: a file that is not an image stops here
    if saving:
        kept = {Path(f).resolve(): what for f, what in [(model, "the model")] + [(i, "an input") for i in inputs]}
        for target in outputs:
            if Path(target).resolve() in kept:
                raise UserError(f"-o {target} is {kept[Path(target).resolve()]}: writing the mask would replace it; "
                                f"choose another output name")  # fmt: skip
            if _picture_format(target) is None:
                raise UserError(f"-o {target}: {Path(target).suffix or 'no extension'} is not a picture format "
                                f"Pillow writes; name the mask .png")  # fmt: skip
            folder = Path(target).parent
            if not folder.is_dir():
                problem = "is a file, not a folder" if folder.exists() else "does not exist; create it first"
                raise UserError(f"cannot write {target}: {folder} {problem}")
            if not os.access(folder, os.W_OK):
                raise UserError(f"cannot write {target}: the folder {folder} is read-only; choose another -o")


def _picture_format(target: str) -> str | None:
    """Pillow's format for a file name (PNG for .png), None when Pillow cannot write it."""
    from PIL import Image

    Image.init()
    found = Image.registered_extensions().get(Path(target).suffix.lower())
    return found if found in Image.SAVE else None


def _save(picture, target: str | Path) -> None:
    """Save through a temporary file beside `target`: a full disk or a failed write leaves no 0-byte mask."""
    from pipeline.errors import UserError

    target = Path(target)
    tmp = target.with_name(f".{target.name}.part")
    try:
        picture.save(tmp, format=_picture_format(str(target)))
        tmp.replace(target)
    except OSError as err:
        if tmp.exists():  # not where the folder is a file
            tmp.unlink()
        raise UserError(f"cannot write {target}: {err.strerror or err}; free some space or choose another -o") from None


def _predict_outputs(args: argparse.Namespace) -> list[str]:
    """The output names of `kseg predict`, once its flags and paths are known to be usable."""
    from pipeline.errors import UserError

    outputs = args.output or [str(Path(i).with_name(Path(i).stem + "_OUT.png")) for i in args.input]
    if len(outputs) != len(args.input):
        raise UserError(f"{len(args.input)} input(s) but {len(outputs)} output name(s); give one -o per -i, or none")
    if args.mask_threshold is not None and not 0 < args.mask_threshold < 1:
        raise UserError(f"--mask-threshold must be in (0, 1), got {args.mask_threshold}")
    if args.scale is not None and not 0.01 <= args.scale <= 4:
        raise UserError(f"--scale must be in [0.01, 4] as train.scale, got {args.scale}; leave it out for the model's")
    _check_paths(args.input, outputs, args.model, saving=not args.no_save or args.viz)
    return outputs


def _predict(args: argparse.Namespace) -> None:
    """Masks for any images with a trained model, one image at a time, like the seed's predict.py.

    By default it predicts as the pipeline does: with flip TTA, precision and the threshold evaluate chose for this
    very checkpoint (reports/evaluate/predictor.json), else 0.5. Paths and the model are checked before the
    first image is predicted.
    """
    from pipeline.errors import UserError

    outputs = _predict_outputs(args)
    import numpy as np  # the model's libraries only now: a wrong path stops before seconds of imports
    from PIL import Image

    from pipeline import runtime
    from pipeline.data.preprocess import Preprocess
    from pipeline.evaluation import overlay
    from pipeline.images import image_size
    from pipeline.masks import postprocess
    from pipeline.masks import recipe as recipes
    from pipeline.masks.postprocess import Rule
    from pipeline.prediction.predictor import load_predictor

    recipe = recipes.read(args.recipe, Path(args.model)) or {}
    rt = runtime.for_inference(recipe.get("amp", True))  # evaluate's precision: its threshold fits these numbers
    predictor = load_predictor([Path(args.model)], rt.device, rt.memory_format)
    channels = predictor.classes if predictor.labels == "multilabel" else 1
    if args.mask_threshold is not None:
        rules = [Rule(args.mask_threshold)] * channels
    else:
        rules = recipes.rules(recipe, channels) if recipe else [Rule(0.5)] * channels
    tta = ("hflip" if args.tta else "none") if args.tta is not None else recipe.get("tta", "hflip")
    chosen_by = "given" if args.mask_threshold is not None else "evaluate" if recipe else "default"
    pre = predictor.pre
    scale = args.scale if args.scale is not None else pre.size[0] / pre.original[0]
    for source in args.input:  # every input's size at this scale, before the first is predicted
        h, w = Preprocess.for_data(image_size(Path(source).read_bytes(), source), scale, pre.channels).size
        if h * w > Image.MAX_IMAGE_PIXELS:
            raise UserError(
                f"{source} at scale {scale:g} is {w}x{h}, more pixels than an image is safely decoded with "
                f"({Image.MAX_IMAGE_PIXELS:,}): lower --scale"
            )
    shown = f"threshold {rules[0].threshold:.3f}" if len(set(rules)) == 1 else "thresholds per class"
    print(f"{shown} ({chosen_by}), TTA {tta}", file=sys.stderr)
    for source, target in zip(args.input, outputs, strict=True):
        path = Path(source)
        data = path.read_bytes()
        original = image_size(data, str(path))
        sized = Preprocess.for_data(original, scale, pre.channels)
        x, _ = dataclasses.replace(pre, size=sized.size).load(data, str(path))
        x = x[None].to(rt.device).contiguous(memory_format=rt.memory_format)
        probs = postprocess.to_uint8(predictor(x, tta, rt.autocast)[0])
        mask, lines = _masks_of(predictor.labels, probs, original, rules, path.name)
        if args.rle:
            print("\n".join(lines))
        if not args.no_save:
            _save(Image.fromarray(mask * 255 if predictor.classes == 1 else mask), target)
            if predictor.classes > 1:
                _save(overlay.colorize(mask), Path(target).with_name(Path(target).stem + "_colors.png"))
            print(f"{path} -> {target}", file=sys.stderr)
        if args.viz:
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            viz = Path(target).with_name(Path(target).stem + "_viz.png")
            _save(overlay.compare(rgb, mask > 0, None, caption=path.name), viz)
            print(f"{path} -> {viz}", file=sys.stderr)


def _masks_of(labels: str, probs, size, rules, name: str):
    """(uint8 mask: 0/1, class indices or bit masks of the classes; its run-length lines) of one prediction:
    row-major `name,runs` for one mask, `name_<class>,runs` column-major (Severstal's order) per class."""
    import numpy as np

    from pipeline.masks import postprocess
    from pipeline.masks.rle import DIALECTS

    if labels == "multilabel":
        masks = [rule.apply(probs[c], size) for c, rule in enumerate(rules)]
        bits = np.zeros(size, np.uint8)
        for c, m in enumerate(masks):
            bits |= m.astype(np.uint8) << c
        return bits, [f"{name}_{c + 1},{DIALECTS['severstal'].encode(m)}" for c, m in enumerate(masks)]
    if labels == "multiclass":
        mask = postprocess.class_maps(probs, size)
    else:
        mask = rules[0].apply(probs[0], size).astype(np.uint8)
    return mask, [f"{name},{DIALECTS['carvana'].encode(mask > 0)}"]


def _export(args: argparse.Namespace) -> None:
    from pipeline.prediction.onnx_export import export
    from pipeline.prediction.onnx_runtime import OnnxModel

    out = export(Path(args.model), Path(args.output), args.opset)
    OnnxModel(out)  # loads, and checks what it wrote
    print(f"{args.model} -> {out} (input 'image' (N, C, H, W) of any size, output 'logits')")


def _masks(args: argparse.Namespace) -> None:
    """Index masks (bit masks for classes that may overlap) and colour pictures of every prediction, from the
    predict stage's shards."""
    from PIL import Image

    from pipeline.errors import UserError
    from pipeline.evaluation import overlay
    from pipeline.masks.postprocess import Rule
    from pipeline.prediction import shards

    if not 0 < args.threshold < 1:
        raise UserError(f"--threshold must be in (0, 1), got {args.threshold}")
    manifest = shards.check_complete(args.predictions)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot make the folder {args.output}: {err.strerror or err}; choose another -o") from None
    rules = [Rule(args.threshold)] * manifest["classes"]
    count = 0
    for k in range(manifest["shards"]):
        for name, size, probs in shards.read_shard(args.predictions / shards.shard_name(k)):
            stem = name.rsplit(".", 1)[0]
            mask, _ = _masks_of(manifest["labels"], probs, size, rules, name)
            _save(Image.fromarray(mask), args.output / f"{stem}.png")
            _save(overlay.colorize(mask), args.output / f"{stem}_colors.png")
            count += 1
    print(f"{args.output}: {count} index masks and colour pictures")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kseg", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser(
        "train",
        help="train a model with the seed's flags (the train stage's code)",
        description="Train the UNet on images and target masks. Unset flags come from params.yaml.",
    )
    t.add_argument("--epochs", "-e", type=int, metavar="E", help="number of epochs")
    t.add_argument("--batch-size", "-b", type=int, metavar="B", help="batch size")
    t.add_argument("--learning-rate", "-l", type=float, metavar="LR", help="learning rate")
    t.add_argument("--load", "-f", metavar="LOAD", help="start from the weights of a .pt/.pth file")
    t.add_argument("--scale", "-s", type=float, metavar="SCALE", help="downscaling factor of the images")
    t.add_argument(
        "--validation",
        "-v",
        type=float,
        metavar="VAL",
        help="percent of the data (whole cars) used as validation (default: 1 fold of split.folds)",
    )
    t.add_argument("--amp", action="store_true", help="use mixed precision (on CUDA)")
    t.add_argument("--classes", "-c", type=int, help="output channels; must match the data (Carvana 1, Severstal 4)")
    t.add_argument("--data", type=Path, default=paths.RAW, help="competition folder (default %(default)s)")
    t.add_argument("--out", type=Path, default=paths.CHECKPOINTS, help="checkpoint folder (default %(default)s)")
    t.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default %(default)s)")
    t.set_defaults(func=_train)

    pr = sub.add_parser(
        "predict", help="predict masks of images with a trained model", description="Predict masks from input images"
    )
    pr.add_argument(
        "--model", "-m", default=str(paths.model(0)), metavar="FILE", help="checkpoint to use (default %(default)s)"
    )
    pr.add_argument("--input", "-i", nargs="+", required=True, metavar="INPUT", help="filenames of input images")
    pr.add_argument("--output", "-o", nargs="+", metavar="OUTPUT", help="filenames of output masks")
    pr.add_argument("--viz", "-v", action="store_true", help="also write an overlay picture <output>_viz.png")
    pr.add_argument("--no-save", "-n", action="store_true", help="do not save the output masks")
    pr.add_argument(
        "--mask-threshold",
        "-t",
        type=float,
        help="minimum probability for a mask pixel (default: the threshold evaluate chose for this model, else 0.5)",
    )
    pr.add_argument("--scale", "-s", type=float, help="scale factor for the input images (default: the model's)")
    pr.add_argument(
        "--rle", action="store_true", help="print run-length lines: img,runs (row-major), or img_<class>,runs per class"
    )
    pr.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        help="average with the horizontally flipped prediction (default: as evaluate scored it, else on)",
    )
    pr.add_argument(
        "--recipe",
        type=Path,
        default=paths.RECIPE,
        help="evaluate's threshold and TTA, used when it was written for this model (default %(default)s)",
    )
    pr.set_defaults(func=_predict)

    e = sub.add_parser("export", help="export a checkpoint to ONNX (dynamic batch, height, width)")
    e.add_argument("--model", "-m", default=str(paths.model(0)), help="checkpoint (default %(default)s)")
    e.add_argument("--output", "-o", default="model.onnx", help="ONNX file to write (default %(default)s)")
    e.add_argument("--opset", type=int, default=18, help="ONNX opset (default %(default)s, torch's exporter's own)")
    e.set_defaults(func=_export)

    m = sub.add_parser("masks", help="write index masks and colour pictures of the predict stage's output")
    m.add_argument("--predictions", "-p", type=Path, default=paths.PREDICTIONS)
    m.add_argument("--output", "-o", type=Path, default=paths.SUBMISSIONS / "masks")
    m.add_argument("--threshold", "-t", type=float, default=0.5, help="sigmoid models only (default %(default)s)")
    m.set_defaults(func=_masks)

    s = sub.add_parser("submissions", help="list your Kaggle submissions and their scores")
    s.add_argument("-c", "--competition", help="competition slug (default: download.competition of --params)")
    s.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default %(default)s)")
    s.add_argument("--wait", action="store_true", help="poll until no submission is pending")
    s.add_argument("--poll", type=float, default=30.0, help="seconds between polls with --wait")
    s.set_defaults(func=_submissions)

    b = sub.add_parser(
        "budget",
        help="what train and predict will cost (images, passes, time, disk), timed on this device; runs nothing",
    )
    b.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="as `dvc exp run -S`")
    b.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default %(default)s)")
    b.add_argument("--data", type=Path, default=paths.RAW, help="competition folder (default %(default)s)")
    b.set_defaults(func=_budget)

    pl = sub.add_parser("plan", help="the plan of every auto param from the data, with its reasons; writes nothing")
    pl.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="as `dvc exp run -S`")
    pl.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default %(default)s)")
    pl.add_argument("--data", type=Path, default=paths.RAW, help="competition folder (default %(default)s)")
    pl.set_defaults(func=_plan)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_stage(lambda: args.func(args))


if __name__ == "__main__":
    main()
