"""``gpumlp sweep --report DIR`` and the lines the sweep prints: its trials as a table (best
first), the best trial's flags as a ready ``gpumlp train`` command, its test score, and the
study's plots (``history.png``, ``importance.png``; Optuna's matplotlib drawings).
"""

from __future__ import annotations

import argparse
import io
import shlex
import warnings
from pathlib import Path
from typing import Any

from ..runs.plotting import write_png
from ..sweeps.searchspace import read_space
from ..sweeps.storage import (
    SWEEP_FILE,
    masked,
    read_sweep_file,
    sqlite_file,
    storage_errors,
    storage_url,
    with_driver,
)
from ..sweeps.studystore import require_optuna

__all__ = ["flag_args", "report", "test_line", "train_command", "trial_line"]


def test_line(study: Any, test: dict[str, Any] | None) -> str:
    if test is None:
        where = study.best_trial.user_attrs.get("worker", {}).get("host")
        return f"test accuracy: not measured (no test split, or the model is on {where})"
    return f"test accuracy of trial {test['trial']}: {test['accuracy']:.4f} ({test['n']} examples)"


def trial_line(t: Any) -> str:
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in t.params.items())
    epochs = len(t.intermediate_values)
    what = {
        "COMPLETE": f"validation accuracy {_fmt(t.value)} after {epochs} epochs",
        "PRUNED": f"pruned after {epochs} epochs at {_fmt(t.value)}",
    }.get(t.state.name, t.state.name.lower())
    return f"trial {t.number}: {what} ({params})"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def flag_args(flags: dict[str, Any]) -> list[str]:
    """Flags as command-line words: lists comma-joined, a True switch alone, None left out."""
    words: list[str] = []
    for key, value in flags.items():
        if value is None or value is False:
            continue
        words.append(f"--{key.replace('_', '-')}")
        if value is not True:
            words.append(",".join(map(str, value)) if isinstance(value, list) else str(value))
    return words


def train_command(study: Any, trial: Any) -> str:
    """``gpumlp train`` with the study's fixed flags and ``trial``'s searched ones."""
    stored = study.user_attrs["gpumlp"]
    dims, _ = read_space(stored["space"])
    flags = {"data": stored.get("data")} | stored["fixed"]
    flags |= {k: dims[k].to_flag(v) for k, v in trial.params.items() if k in dims}
    return shlex.join(["gpumlp", "train", *flag_args(flags)])


def report(args: argparse.Namespace) -> int:
    """Print the trials of the sweep in ``--report DIR``, best first, and draw its plots."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    folder = Path(args.report)
    info, db = read_sweep_file(folder) or {}, folder / "study.db"
    url = args.storage or info.get("storage") or (db.is_file() and storage_url(folder, None))
    if not url:
        raise ValueError(
            f"--report {str(folder)!r}: no sweep there (no sweep.json or study.db);"
            " for a study kept elsewhere give --storage URL --study NAME"
        )
    if "***" in url:
        raise ValueError(
            f"--report {str(folder)!r}: the study is in {url}: give --storage with its password"
        )
    named = "" if args.storage else f" (named by {str(folder / SWEEP_FILE)!r})"
    path = sqlite_file(url, named)
    if path is not None and not path.is_file():  # SQLAlchemy would make an empty one
        raise ValueError(f"study file {str(path)!r}{named} does not exist")
    with storage_errors(url, named):
        return _report(optuna, url, args.study or info.get("study"), folder)


def _report(optuna: Any, url: str, name: str | None, folder: Path) -> int:
    """Print the trials of the study ``name`` in ``url``, draw its plots into ``folder``."""
    try:
        study = optuna.load_study(study_name=name, storage=with_driver(url))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"--report {str(folder)!r}: no study {name!r} in {masked(url)}") from exc
    trials = study.get_trials(deepcopy=False)
    order = {"COMPLETE": 0, "PRUNED": 1}
    trials.sort(key=lambda t: (order.get(t.state.name, 2), -(t.value or 0), t.number))
    params = list(study.user_attrs.get("gpumlp", {}).get("space", {}))
    rows = [["trial", "state", "value", *params, "epochs"]]
    for t in trials:
        values = [_fmt(t.params.get(k, "")) for k in params]
        value = "" if t.value is None else _fmt(t.value)
        rows.append(
            [str(t.number), t.state.name.lower(), value, *values, str(len(t.intermediate_values))]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"study {study.study_name!r} in {masked(url)}: {len(trials)} trials")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if any(t.state.name == "COMPLETE" for t in trials):
        print(f"best flags: {train_command(study, study.best_trial)}")
        test = study.user_attrs.get("test")
        if isinstance(test, dict) and test.get("trial") == study.best_trial.number:
            print(test_line(study, test))
    for line in _plots(study, folder):
        print(line)
    return 0


def _plots(study: Any, folder: Path) -> list[str]:
    """Draw ``history.png`` and ``importance.png`` into ``folder``; a line about each."""
    try:
        import matplotlib
    except ImportError:
        return ["matplotlib is not installed: no plots (pip install 'gpumlp[plot]')"]
    matplotlib.use("Agg")  # Optuna draws with pyplot: no display wanted
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as draw

    lines = []
    for filename, plot in (
        ("history.png", draw.plot_optimization_history),
        ("importance.png", draw.plot_param_importances),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna calls these experimental
                plot(study)
            figure = plt.gcf()
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", bbox_inches="tight")
            plt.close(figure)
        except (ValueError, RuntimeError) as exc:  # e.g. too few complete trials to rank
            lines.append(f"{filename}: not drawn ({exc})")
            continue
        write_png(folder / filename, buffer.getvalue())  # an unwritable folder: an error
        lines.append(f"wrote {folder / filename}")
    return lines
