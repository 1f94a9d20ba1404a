"""gpumlp's table defaults against scikit-learn's MLP on its bundled tables, as a user runs them.

For each of iris, wine, breast cancer and digits (``sklearn.datasets``) and each seed: an 80/20
stratified split; the 80% written as a CSV (features, then the label) and trained by
``gpumlp train --data FILE`` with no other training flags (and again with ``--val-split 0.1``,
which turns early stopping on), each scored by ``gpumlp eval RUN --data TEST.csv`` on the 20%;
``make_pipeline(StandardScaler(), MLPClassifier())`` with scikit-learn's defaults and
``gpumlp.sklearn.MLPClassifier()`` with gpumlp's, both fitted in this process on the same 80%
and scored on the same 20%. Accuracies are averaged over the seeds, then over the data sets.
Diabetes, a regression, the same way (an 80/20 split, ``--task regression``: its targets are
integers of 214 values, which ``gpumlp train`` refuses to guess), scored by R² against
``make_pipeline(StandardScaler(), MLPRegressor())``, the same with standardized targets, and
``gpumlp.sklearn.MLPRegressor()``.
The table replaces the "Tables" section of the Markdown file ``--out`` up to its next heading
(added at its end the first time; the rest of the file is kept) and is printed.

    python scripts/tables_vs_sklearn.py --out docs/results.md        # 3 seeds, a few minutes
    python scripts/tables_vs_sklearn.py --data iris --seeds 0        # one data set, one seed
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ("iris", "wine", "breast_cancer", "digits")
VALUES = ("diabetes",)
DATA = (*CLASSES, *VALUES)
HEADING = "## Tables: gpumlp's defaults against scikit-learn's MLP"
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# column: (the command, as the table shows it)
CLI = {
    "gpumlp train": [],
    "gpumlp train --val-split 0.1": ["--val-split", "0.1"],
}
REGRESSION_FLAGS = ["--task", "regression"]  # diabetes' integer targets: refused unasked
SK_REG, SK_REG_SCALED = "scikit-learn", "scikit-learn, targets standardized"


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return X.astype(np.float64), y.astype(np.float64 if name in VALUES else np.int64)


def write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> Path:
    """A header and one row per example: the features, then the label (or target)."""
    header = ",".join([*(f"x{j}" for j in range(X.shape[1])), "label"])
    rows = [",".join([*(repr(float(v)) for v in x), f"{k:g}"]) for x, k in zip(X, y, strict=True)]
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def gpumlp(*argv: Any) -> str:
    """``python -m gpumlp ARGV`` (one BLAS thread) -> stdout; fails loudly."""
    env = {**os.environ, **ONE_THREAD}
    done = subprocess.run([sys.executable, "-m", "gpumlp", *map(str, argv)], env=env,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"gpumlp {' '.join(map(str, argv))}: {done.stderr}")
    return done.stdout


def cli_run(folder: Path, train: Path, test: Path, seed: int, extra: list[str]) -> dict:
    """Train with the command line, score the test file: accuracy (a regression's R²),
    seconds, epochs."""
    out = folder / f"run-{len(list(folder.glob('run-*')))}"
    start = time.perf_counter()
    gpumlp("train", "--data", train, "--seed", seed, "--quiet", "--out", out, *extra)
    seconds = time.perf_counter() - start
    scored = gpumlp("eval", out, "--data", test)
    epochs = len((out / "history.csv").read_text().splitlines()) - 1
    if (r2 := re.search(r"R² (-?[\d.]+)", scored)) is not None:
        return {"r2": float(r2[1]), "seconds": seconds, "epochs": epochs}
    accuracy = float(re.search(r"accuracy ([\d.]+)", scored)[1])
    return {"accuracy": accuracy, "seconds": seconds, "epochs": epochs}


def in_process(model: Any, X, y, X_test, y_test, key: str = "accuracy") -> dict:
    """Fit an estimator here: its score on the test rows (``key``: accuracy, or a
    regressor's R²), seconds of ``fit``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning at max_iter
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
    return {key: float(model.score(X_test, y_test)), "seconds": seconds}


def regressors(X, y, X_test, y_test, seed: int) -> dict[str, dict]:
    """The in-process regressors, fitted and scored by R²: scikit-learn's MLPRegressor (as
    is, and with standardized targets) and gpumlp's."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.neural_network import MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from gpumlp.sklearn import MLPRegressor as Estimator

    def sk() -> Any:
        return make_pipeline(StandardScaler(), MLPRegressor(random_state=seed))

    scaled = TransformedTargetRegressor(sk(), transformer=StandardScaler())
    models = {SK_REG: sk(), SK_REG_SCALED: scaled, "gpumlp.sklearn": Estimator(random_state=seed)}
    return {c: in_process(m, X, y, X_test, y_test, "r2") for c, m in models.items()}


def measure(names: list[str], seeds: list[int]) -> dict[str, dict[str, list[dict]]]:
    """results[data][column] = one record per seed."""
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from gpumlp.sklearn import MLPClassifier as Estimator

    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in names:
            X, y = load(name)
            values = name in VALUES
            columns: dict[str, list[dict]] = {}
            for seed in seeds:
                X_tr, X_te, y_tr, y_te = train_test_split(
                    X, y, test_size=0.2, stratify=None if values else y, random_state=seed
                )
                train = write_csv(folder / f"{name}-{seed}.csv", X_tr, y_tr)
                test = write_csv(folder / f"{name}-{seed}-test.csv", X_te, y_te)
                if values:
                    got = regressors(X_tr, y_tr, X_te, y_te, seed)
                else:
                    sk = make_pipeline(StandardScaler(), MLPClassifier(random_state=seed))
                    got = {
                        "scikit-learn": in_process(sk, X_tr, y_tr, X_te, y_te),
                        "gpumlp.sklearn": in_process(
                            Estimator(random_state=seed), X_tr, y_tr, X_te, y_te
                        ),
                    }
                for column, extra in CLI.items():
                    flags = [*extra, *(REGRESSION_FLAGS if values else [])]
                    got[column] = cli_run(folder, train, test, seed, flags)
                for column, record in got.items():
                    columns.setdefault(column, []).append(record)
                    print(f"{name} seed {seed} {column}: {record}", file=sys.stderr, flush=True)
            results[name] = columns
    return results


def _mean(records: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in records)


def _spread(values: list[float], digits: int) -> str:
    """``values`` as "mean ± standard deviation" (0 for one value), ``digits`` decimals."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def regression_table(results: dict[str, dict[str, list[dict]]]) -> list[str]:
    """The regression rows: R² on the 20% (mean ± standard deviation over the seeds) and
    seconds, per column; none without a regression among ``results``."""
    columns = [SK_REG, SK_REG_SCALED, *CLI, "gpumlp.sklearn"]
    head = ["data set (rows, features)"]
    head += [f"{c} R²" for c in columns] + [f"{c} s" for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, got in results.items():
        X, _ = load(name)
        cells = [f"{name} ({len(X)}, {X.shape[1]})"]
        cells += [_spread([r["r2"] for r in got[c]], 3) for c in columns]
        cells += [f"{_mean(got[c], 'seconds'):.2f}" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines if results else []


def table(results: dict[str, dict[str, list[dict]]], seeds: list[int]) -> str:
    """The Markdown section: machine, commands, one row per data set and the averages (the
    classifiers' table, then the regressors')."""
    values = {name: got for name, got in results.items() if name in VALUES}
    results = {name: got for name, got in results.items() if name not in VALUES}
    columns = ["scikit-learn", *CLI, "gpumlp.sklearn"]
    head = ["data set (rows, features, classes)"]
    head += [f"{c} accuracy %" for c in columns] + [f"{c} s" for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, got in results.items():
        X, y = load(name)
        cells = [f"{name} ({len(X)}, {X.shape[1]}, {len(set(y.tolist()))})"]
        cells += [_spread([100 * r["accuracy"] for r in got[c]], 2) for c in columns]
        cells += [f"{_mean(got[c], 'seconds'):.2f}" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    average = ["**average**"]
    for key, bold, scale in (("accuracy", "**", 100), ("seconds", "", 1)) if results else ():
        for c in columns:
            value = scale * statistics.fmean(_mean(g[c], key) for g in results.values())
            average.append(f"{bold}{value:.2f}{bold}")
    lines = [*lines, "| " + " | ".join(average) + " |"] if results else []
    import sklearn

    import gpumlp as gp

    prose = [
        f"`gpumlp train --data FILE` with no other training flags against scikit-learn's "
        f"`MLPClassifier`, on scikit-learn's bundled tables: 80/20 stratified splits "
        f"(`train_test_split(..., stratify=y, random_state=seed)`), seeds "
        f"{', '.join(map(str, seeds))}; accuracy on the 20% (mean ± standard deviation over "
        "the seeds; the average is over the data sets of those means).",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_implementation()} {platform.python_version()}, NumPy "
        f"{np.__version__}, scikit-learn {sklearn.__version__}, gpumlp {gp.__version__}, NumPy "
        "backend, one BLAS thread for every run; "
        f"{time.strftime('%Y-%m-%d')}.",
        "- Command: `python scripts/tables_vs_sklearn.py --out docs/results.md`.",
        "- **scikit-learn**: `make_pipeline(StandardScaler(), MLPClassifier(random_state=seed))`, "
        "its defaults (100 ReLU units, Adam at 0.001, batches of 200, up to 200 epochs, no "
        "early stopping), fitted in process.",
        "- **gpumlp train**: the 80% as `FILE.csv` (the label last), `gpumlp train --data "
        "FILE.csv --seed SEED --quiet --out RUN`, then `gpumlp eval RUN --data TEST.csv`; the "
        "table defaults, no validation split, so all 200 epochs; seconds are the whole "
        "command's (Python's start and the CSV read included).",
        "- **gpumlp train --val-split 0.1**: the same with a tenth of the 80% held out: early "
        "stopping after 10 epochs without a lower validation cost, on 90% of the rows.",
        "- **gpumlp.sklearn**: `gpumlp.sklearn.MLPClassifier(random_state=seed)`, its defaults "
        "(the table defaults, `validation_fraction=0.1`: early stopping), fitted in process.",
        "- **Regression** (the second table): diabetes, an 80/20 split (`train_test_split(..., "
        "random_state=seed)`, not stratified), R² on the 20%. **scikit-learn**: "
        "`make_pipeline(StandardScaler(), MLPRegressor(random_state=seed))`, its defaults; "
        "**scikit-learn, targets standardized**: the same inside `TransformedTargetRegressor("
        "..., transformer=StandardScaler())`; **gpumlp train**: as above with `--task "
        "regression` (diabetes' targets are integers of 214 values, which `gpumlp train` "
        "refuses to take as classes or values unasked), scored by `gpumlp eval`; "
        "**gpumlp.sklearn**: `gpumlp.sklearn.MLPRegressor(random_state=seed)`.",
    ]
    wrapped = [textwrap.fill(prose[0], 100, break_on_hyphens=False, break_long_words=False)]
    wrapped += [textwrap.fill(item, 100, subsequent_indent="  ", break_on_hyphens=False,
                              break_long_words=False) for item in prose[1:]]  # fmt: skip
    tables = [*lines, *([""] if lines and values else []), *regression_table(values)]
    return "\n".join([HEADING, "", wrapped[0], "", *wrapped[1:], "", *tables, ""])


def write_section(path: Path, section: str) -> None:
    """Replace the Tables section of ``path`` (up to the next heading, ``## `` or ``### ``: a
    reading of the numbers written by hand stays), or add it at the end."""
    text = path.read_text() if path.exists() else ""
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    else:
        found = re.search(r"\n#{2,3} ", text[start + len(HEADING) :])
        end = -1 if found is None else start + len(HEADING) + found.start()
        text = text[:start] + section + ("" if end < 0 else "\n" + text[end + 1 :])
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", choices=DATA, default=list(DATA))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", type=Path, help="Markdown file whose Tables section is replaced")
    args = p.parse_args(argv)
    results = measure(args.data, args.seeds)
    section = table(results, args.seeds)
    print(section)
    if args.out is not None:
        write_section(args.out, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
