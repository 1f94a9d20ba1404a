"""``gpumlp predict``: a trained model's classes (or a regression's values) for the rows of a
table, or the classes of pictures.

A table (a CSV file, or X.npy) gets one output row per input row, written as CSV to
``--output`` (atomically) or stdout: the class (its name, or label value), and with
``--proba`` a column per class, headed by the class; a regression model writes the predicted
value (a column per target), and refuses ``--proba``. A CSV's columns are matched to the
model's inputs by header name (in any order); the training file's label column, the columns
the run left out (``--drop``) and pandas' index column are left out, with a note on stderr.
Pictures get the digit and the network's score of every class. What the model was trained on
(``data`` in its file) decides which it takes; the other is refused, naming what it expects
(a regression model never takes pictures: it predicts no digit).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..atomicio import atomic_write_bytes
from ..backend import to_host
from ..data.csvread import read_csv_inputs
from ..data.formats import data_format
from ..data.images import IMAGE_SUFFIXES
from ..files.modeldata import column_order
from ..files.npyview import open_rows
from ..files.safeio import open_regular
from ..loader import load
from ..model import Network
from ._args import UsageError, add_flag, check_output_path
from .inspect import model_path, run_args

__all__ = ["add_parsers"]


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> dict[str, Any]:
    """Add ``predict`` to the subcommands; return its handler."""
    pr = sub.add_parser("predict", parents=parents,
                        help="the class (or a regression's value) of each row of a table, "
                        "or the digit of pictures")  # fmt: skip
    pr.add_argument("model", help="model or checkpoint .npz, or a run folder")
    pr.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="a table (FILE.csv, X.npy) for a table's model; pictures (any format Pillow "
        "reads), or folders of them, for a model of digits",
    )
    pr.add_argument("--output", default=None, help="with a table: write the CSV here, not stdout")
    pr.add_argument("--proba", action="store_true",
                    help="with a table and a classifier: a column per class")  # fmt: skip
    pr.add_argument("--label-column", default=None,
                    help="with a CSV: the label column to leave out when present (default: the "
                    "training file's)")  # fmt: skip
    add_flag(pr, "drop", default=None,
             help="with a CSV: columns to leave out (default: the run's --drop)")  # fmt: skip
    pr.add_argument("--backend", default="auto")
    return {"predict": run_predict}


def _note(text: str) -> None:
    print(f"gpumlp: note: {text}", file=sys.stderr, flush=True)


def _is_table(value: str) -> bool:
    """Whether ``value`` names a table (text, an .npy file), not a picture, by its content."""
    path = Path(value)
    if not path.is_file() or path.suffix.lower() in IMAGE_SUFFIXES:
        return False
    try:
        return data_format(path) in ("csv", "npy", "npz")
    except (ValueError, OSError):  # no table: a picture, or for the image reader to refuse
        return False


def _check_input(path: Path) -> None:
    """Refuse an input that is missing or not a regular file, saying so (FileNotFoundError,
    ValueError), rather than as a table of the wrong kind."""
    if not path.exists():
        raise FileNotFoundError(f"input {str(path)!r} does not exist")
    open_regular(path, "input").close()  # a FIFO, device or folder: refused at once


def run_predict(args: argparse.Namespace) -> int:
    """Predict the table or the pictures ``args.inputs`` names, as the model's data kind says."""
    if args.output is not None:  # refused before anything is read or computed
        check_output_path(args.output, "--output", "the predictions")
    path = model_path(args.model)
    net: Network = load(path, backend=args.backend)
    table = len(args.inputs) == 1 and _is_table(args.inputs[0])
    kind = net.data_kind or ("table" if table else "images")
    if kind == "table" and not table:
        if len(args.inputs) == 1:
            _check_input(Path(args.inputs[0]))
        raise UsageError(
            f"{str(path)!r} was trained on a table: it takes rows of {net.sizes[0]} inputs, as "
            f"one FILE.csv or X.npy, not {' '.join(args.inputs)[:200]}"
        )
    if kind == "images" and table:
        raise UsageError(
            f"{str(path)!r} was trained on pictures of digits: it takes images (or folders of "
            f"them), not the table {args.inputs[0]}"
        )
    if net.task == "regression" and (kind == "images" or args.proba):
        raise UsageError(
            f"{str(path)!r} is a regression model: it predicts values for the rows of a table "
            + ("(no class scores: leave --proba out)" if args.proba else "(no digit of pictures)")
        )
    if kind == "images":
        if args.output is not None or args.proba:
            raise UsageError("--output and --proba are for a table's model; this one takes images")
        return _predict_images(net, path, args.inputs)
    X = _table_inputs(net, path, Path(args.inputs[0]), args)
    text = _predictions(net, X, proba=args.proba)
    if args.output is None:
        sys.stdout.write(text)
    else:
        atomic_write_bytes(args.output, text.encode("utf-8"))
    return 0


def _table_inputs(net: Network, model: Path, path: Path, args: argparse.Namespace) -> Any:
    """The rows of ``path`` as the model's inputs (n, sizes[0]), in its order."""
    n_in, run, fmt = net.sizes[0], run_args(model), data_format(path)
    if fmt == "npy":
        if args.label_column is not None or args.drop is not None:
            raise UsageError("--label-column and --drop are for a CSV file")
        X = np.asarray(open_rows(path))
        if X.ndim != 2 or X.shape[1] != n_in:
            raise ValueError(
                f"{path} holds X of shape {X.shape}, but the model takes {n_in} inputs"
            )
        return X
    if fmt != "csv":
        raise ValueError(f"{path}: predict takes a CSV file or X.npy of the rows to classify")
    label = args.label_column or net.inputs.info.label or run.get("label_column")
    drop = args.drop if args.drop is not None else run.get("drop") or ()
    X, columns, notes = read_csv_inputs(path, n_in, label_column=label, drop=drop)
    for note in notes:
        _note(note)
    if net.features is not None and columns is not None:
        return X[:, column_order(columns, net.features, source=str(path))]
    if X.shape[1] != n_in:
        raise ValueError(
            f"{path} has {X.shape[1]} input columns, but the model takes {n_in} inputs"
        )
    return X


def _predictions(net: Network, X: Any, *, proba: bool) -> str:
    """The CSV text of the predictions: a header, then each row's class (and scores), or a
    regression's values (a column per target, headed by the training label's name)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if net.task == "regression":
        values = to_host(net.predict_values(X))
        head = net.inputs.info.label or "value"
        k = values.shape[1]
        writer.writerow([head] if k == 1 else [f"{head}_{j}" for j in range(k)])
        digits = np.finfo(np.dtype(net.spec.dtype)).precision + 1  # what the network holds
        writer.writerows([f"{v:.{digits}g}" for v in row] for row in values.tolist())
        return out.getvalue()
    classes = net.classes if net.classes is not None else tuple(range(max(net.sizes[-1], 2)))
    writer.writerow([net.inputs.info.label or "class", *(map(str, classes) if proba else ())])
    predicted = net.predict_classes(X).tolist()
    if not proba:
        writer.writerows([p] for p in predicted)
        return out.getvalue()
    scores = to_host(net.predict_proba(X))
    for p, row in zip(predicted, scores.tolist(), strict=True):
        writer.writerow([p, *(f"{s:.6g}" for s in row)])
    return out.getvalue()


def _predict_images(net: Network, path: Path, inputs: list[str]) -> int:
    """The class of each picture, with the network's score for every class."""
    from ..data.images import find_images, read_digit  # Pillow: only once there is a model to use

    side = math.isqrt(net.sizes[0])
    if side * side != net.sizes[0]:
        raise UsageError(f"{str(path)!r} takes {net.sizes[0]} inputs, not a square image")
    files = find_images(inputs)
    pixels = np.stack([read_digit(f, side=side) for f in files])
    scores = to_host(net.feedforward(pixels))
    for f, row in zip(files, scores, strict=True):
        label = f"{f}: " if len(files) > 1 else ""
        print(f"{label}digit: {int(np.argmax(row))}")
        print("scores: " + "  ".join(f"{i}:{s:.3f}" for i, s in enumerate(row)))
    return 0
