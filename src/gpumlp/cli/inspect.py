"""``gpumlp eval`` and ``gpumlp predict``: a trained model on a test set, or on pictures.

Both take a model file, a training checkpoint, or a run folder (its ``model.npz``, else its
``checkpoint.npz``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import to_host
from ..data.sources import DataSet, data_format, load_data
from ..loader import load
from ..model import Network
from ..runs.rundir import read_args
from ._args import UsageError

__all__ = ["add_parsers", "model_path"]


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> dict[str, Any]:
    """Add ``eval`` and ``predict`` to the subcommands; return their handlers."""
    e = sub.add_parser(
        "eval",
        parents=parents,
        help="accuracy and confusion matrix (regression: MSE, MAE, R²) on a test set",
    )
    e.add_argument("model", help="model or checkpoint .npz, or a run folder")
    e.add_argument("--data", default=None, help="data set (default: the run's, else MNIST)")
    e.add_argument("--labels", default=None, help="with --data X.npy: its labels y.npy")
    e.add_argument(
        "--label-column",
        default=None,
        help="with --data FILE.csv: the label column, by header name or 0-based index "
        "(default: the run's, else the last column)",
    )
    e.add_argument("--backend", default="auto")
    pr = sub.add_parser("predict", parents=parents, help="classify pictures of digits")
    pr.add_argument("model", help="model or checkpoint .npz, or a run folder")
    pr.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="pictures (any format Pillow reads), or folders of them",
    )
    pr.add_argument("--backend", default="auto")
    return {"eval": run_eval, "predict": run_predict}


def model_path(value: str) -> Path:
    """The model file a command line names: the file, or a run folder's model (or checkpoint)."""
    path = Path(value)
    if path.is_dir():
        for name in ("model.npz", "checkpoint.npz"):
            if (path / name).is_file():
                return path / name
        raise UsageError(f"{value!r} is a folder without model.npz or checkpoint.npz")
    return path


_RUN_DATA = ("data", "labels", "label_column", "val_split", "seed")


def _run_args(model: Path) -> dict[str, Any]:
    """The data flags of the run a model was trained in (its folder's ``args.json``), those
    of the right type; empty when the model is not in a run folder. ValueError naming the file
    when it is there but unreadable (:func:`gpumlp.runs.rundir.read_args`)."""
    saved = read_args(model.parent) or {}
    kinds = {"data": str, "labels": str, "label_column": str | int, "val_split": float,
             "seed": int}  # fmt: skip
    return {k: saved[k] for k in _RUN_DATA if isinstance(saved.get(k), kinds[k])}


def _eval_data(
    given: str | None,
    run: dict[str, Any],
    *,
    labels: str | None,
    column: str | None,
    task: str,
) -> tuple[DataSet, bool]:
    """The data ``eval`` scores, and whether it is the run's own: its data, labels, label
    column and held-out rows, when ``--data`` is not given or names the run's file (and no
    other labels are given); else ``--data`` with ``labels``, and ``column`` (default the
    run's) when it is a CSV. Its labels are read as the model's ``task`` takes them."""
    if given is None and (labels is not None or column is not None):
        raise UsageError("--labels and --label-column go with --data")
    same = given is not None and "data" in run and Path(given).resolve() == Path(run["data"])
    if given is None or (same and labels is None and column is None):
        own = load_data(
            run.get("data"),
            labels=run.get("labels"),
            label_column=run.get("label_column"),
            val_split=run.get("val_split"),
            seed=run.get("seed", 0),
            task=task,
        )
        return own, True
    path = Path(given)
    fmt = data_format(path) if path.is_file() else None
    if fmt == "csv" and column is None:
        column = run.get("label_column")
    return load_data(given, labels=labels, label_column=column, training=False, task=task), False


def run_eval(args: argparse.Namespace) -> int:
    """Accuracy, cost and confusion matrix of the model on its data's test split (else its
    validation split); a regression's MSE, MAE, R² and cost."""
    path = model_path(args.model)
    net = load(path, backend=args.backend)
    run = _run_args(path)
    data, own = _eval_data(
        args.data, run, labels=args.labels, column=args.label_column, task=net.task
    )
    scored, split = (
        ("the test set", data.test)
        if data.test is not None
        else ("the validation set", data.validation)
    )
    if split is None and not own:  # another file of examples: score all of it
        scored, split = f"all {len(data.train[0])} examples of {args.data}", data.train
    if split is None:
        raise UsageError(
            "the data has no test or validation split to evaluate on (train with --val-split "
            "to hold one out)"
        )
    X, y = split
    if net.sizes[0] != data.n_features:
        raise UsageError(
            f"{str(path)!r} takes {net.sizes[0]} inputs, but the data has "
            f"{data.n_features} features per example"
        )
    result = net.evaluate(X, y)
    if net.task == "regression":
        rows = "" if split is data.train else f" ({len(y)} examples)"  # "all N examples of F"
        print(
            f"{args.model}: MSE {result['mse']:.4f}, MAE {result['mae']:.4f}, R² "
            f"{result['r2']:.4f}, cost {result['cost']:.4f} on {scored}{rows}"
        )
        return 0
    if y.ndim == 1:
        labels = y
    else:  # targets: the class is the largest, or for one unit whether it passes 0.5
        labels = (y[:, 0] > 0.5).astype(np.int64) if y.shape[1] == 1 else np.argmax(y, axis=1)
    pred = to_host(net.predict(X))
    k = max(net.sizes[-1], 2)
    print(
        f"{args.model}: accuracy {result['accuracy']:.4f} "
        f"({int(np.sum(pred == labels))} / {len(labels)}), cost {result['cost']:.4f} "
        f"on {scored}"
    )
    if k <= 20:
        confusion = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
        print("confusion matrix (rows: true class, columns: predicted)")
        print("     " + " ".join(f"{j:5d}" for j in range(k)))
        for i, row in enumerate(confusion):
            print(f"{i:3d}  " + " ".join(f"{v:5d}" for v in row))
        if data.classes is not None:
            print("classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(data.classes)))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """The class of each picture, with the network's score for every class."""
    path = model_path(args.model)
    net: Network = load(path, backend=args.backend)
    from ..data.images import find_images, read_digit  # Pillow: only once there is a model to use

    side = math.isqrt(net.sizes[0])
    if side * side != net.sizes[0]:
        raise UsageError(f"{str(path)!r} takes {net.sizes[0]} inputs, not a square image")
    files = find_images(args.images)
    pixels = np.stack([read_digit(f, side=side) for f in files])
    scores = to_host(net.feedforward(pixels))
    for f, row in zip(files, scores, strict=True):
        label = f"{f}: " if len(files) > 1 else ""
        print(f"{label}digit: {int(np.argmax(row))}")
        print("scores: " + "  ".join(f"{i}:{s:.3f}" for i, s in enumerate(row)))
    return 0
