"""``gpumlp eval`` and ``gpumlp predict``: a trained model on a test set, or on pictures.

Both take a model file, a training checkpoint, or a run folder (its ``model.npz``, else its
``checkpoint.npz``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import to_host
from ..loader import load
from ..model import Network
from ..sources import load_data
from ._args import UsageError

__all__ = ["add_parsers", "model_path"]


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> dict[str, Any]:
    """Add ``eval`` and ``predict`` to the subcommands; return their handlers."""
    e = sub.add_parser("eval", parents=parents, help="accuracy and confusion matrix on a test set")
    e.add_argument("model", help="model or checkpoint .npz, or a run folder")
    e.add_argument("--data", default=None, help="data set (default: the run's, else MNIST)")
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


def _run_data(model: Path) -> str | None:
    """The data a run folder trained on (its args.json), if the model is in one."""
    args = model.parent / "args.json"
    if not args.is_file():
        return None
    try:
        data = json.loads(args.read_text()).get("data")
    except (OSError, ValueError, AttributeError):
        return None
    return data if isinstance(data, str) else None


def run_eval(args: argparse.Namespace) -> int:
    """Accuracy, cost and confusion matrix of the model on its data's test split."""
    path = model_path(args.model)
    net = load(path, backend=args.backend)
    data = load_data(args.data if args.data is not None else _run_data(path))
    scored, split = (
        ("test", data.test) if data.test is not None else ("validation", data.validation)
    )
    if split is None:
        raise UsageError("the data has no test or validation split to evaluate on")
    X, y = split
    if net.sizes[0] != data.n_features:
        raise UsageError(
            f"{str(path)!r} takes {net.sizes[0]} inputs, but the data has "
            f"{data.n_features} features per example"
        )
    result = net.evaluate(X, y)
    labels = y if y.ndim == 1 else np.argmax(y, axis=1)
    pred = to_host(net.predict(X))
    k = max(net.sizes[-1], 2)
    print(
        f"{args.model}: accuracy {result['accuracy']:.4f} "
        f"({int(np.sum(pred == labels))} / {len(labels)}), cost {result['cost']:.4f} "
        f"on the {scored} set"
    )
    if k <= 20:
        confusion = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k)
        print("confusion matrix (rows: true class, columns: predicted)")
        print("     " + " ".join(f"{j:5d}" for j in range(k)))
        for i, row in enumerate(confusion):
            print(f"{i:3d}  " + " ".join(f"{v:5d}" for v in row))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """The class of each picture, with the network's score for every class."""
    path = model_path(args.model)
    net: Network = load(path, backend=args.backend)
    from ..images import find_images, read_digit  # Pillow: only once there is a model to use

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
