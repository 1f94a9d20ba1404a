"""``gpumlp eval``: a trained model on a test set; what ``eval`` and ``predict`` share.

Both take a model file, a training checkpoint, or a run folder (its ``model.npz``, else its
``checkpoint.npz``), and read the data as the run did (its ``args.json``). Labels are held to
the model's classes: a file that lacks a class is scored as it is, a label the model never saw
is refused, naming it. A regression's labels are read as values (its task, kept in the model)
and scored by MSE, MAE and R².
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import to_host
from ..data.formats import data_format
from ..data.sources import DataSet, load_data
from ..loader import load
from ..model import Network
from ..runs.rundir import read_args
from ._args import UsageError, add_flag

__all__ = ["add_parsers", "model_path", "run_args"]


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> dict[str, Any]:
    """Add ``eval`` to the subcommands; return its handler."""
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
    add_flag(e, "drop", default=None,
             help="with --data FILE.csv: columns to leave out (default: the run's "
             "--drop)")  # fmt: skip
    e.add_argument("--backend", default="auto")
    return {"eval": run_eval}


def model_path(value: str) -> Path:
    """The model file a command line names: the file, or a run folder's model (or checkpoint)."""
    path = Path(value)
    if path.is_dir():
        for name in ("model.npz", "checkpoint.npz"):
            if (path / name).is_file():
                return path / name
        raise UsageError(f"{value!r} is a folder without model.npz or checkpoint.npz")
    return path


_RUN_DATA = ("data", "labels", "label_column", "val_split", "seed", "drop")


def run_args(model: Path) -> dict[str, Any]:
    """The data flags of the run a model was trained in (its folder's ``args.json``), those
    of the right type; empty when the model is not in a run folder. ValueError naming the file
    when it is there but unreadable (:func:`gpumlp.runs.rundir.read_args`)."""
    saved = read_args(model.parent) or {}
    kinds = {"data": str, "labels": str, "label_column": str | int, "val_split": float,
             "seed": int, "drop": list}  # fmt: skip
    return {k: saved[k] for k in _RUN_DATA if isinstance(saved.get(k), kinds[k])}


def _eval_data(
    given: str | None, run: dict[str, Any], net: Network, *, labels: str | None,
    column: str | None, drop: list[str] | None,
) -> tuple[DataSet, bool]:  # fmt: skip
    """The data ``eval`` scores, its labels read as the model ``net`` takes them (its task;
    a classifier's held to its classes), and whether it is the run's own: its data, labels,
    label column, dropped columns and held-out rows, when ``--data`` is not given or names
    the run's file (and no other labels are given); else ``--data`` with ``labels``, and
    ``column`` and ``drop`` (default the run's) for a CSV."""
    if given is None and (labels is not None or column is not None or drop is not None):
        raise UsageError("--labels, --label-column and --drop go with --data")
    same = given is not None and "data" in run and Path(given).resolve() == Path(run["data"])
    if given is None or (same and labels is None and column is None and drop is None):
        own = load_data(
            run.get("data"),
            labels=run.get("labels"),
            label_column=run.get("label_column"),
            val_split=run.get("val_split"),
            seed=run.get("seed", 0),
            drop=run.get("drop"),
            classes=net.classes,
            task=net.task,
        )
        return own, True
    path = Path(given)
    if path.is_file() and data_format(path) == "csv":
        column = run.get("label_column") if column is None else column
        drop = run.get("drop") if drop is None else drop
    data = load_data(given, labels=labels, label_column=column, drop=drop, classes=net.classes,
                     task=net.task)  # fmt: skip
    return data, False


def run_eval(args: argparse.Namespace) -> int:
    """Accuracy, cost and confusion matrix of the model on its data's test split (else its
    validation split); a regression's MSE, MAE, R² and cost."""
    path = model_path(args.model)
    net = load(path, backend=args.backend)
    run = run_args(path)
    data, own = _eval_data(args.data, run, net, labels=args.labels, column=args.label_column,
                           drop=args.drop)  # fmt: skip
    for note in data.notes:
        print(f"gpumlp: note: {note}", file=sys.stderr, flush=True)
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
    result = net.evaluate(*data.valued(split))
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
        # the classes head the rows and columns where they fit, else their indices do
        shown = [str(c) for c in net.classes or range(k)]
        short = all(len(c) <= 5 for c in shown)
        heads = shown if short else [str(j) for j in range(k)]
        print("confusion matrix (rows: true class, columns: predicted)")
        print("     " + " ".join(f"{h:>5}" for h in heads))
        for head, row in zip(heads, confusion, strict=True):
            print(f"{head:>3}  " + " ".join(f"{v:5d}" for v in row))
        if not short:
            print("classes: " + ", ".join(f"{i} {c}" for i, c in enumerate(shown)))
    return 0
