"""``gpumlp sweep`` and ``gpumlp.sweep``: the search space refused before anything is
written, trials as run folders, pruning, the report, and Optuna kept optional.

The worker tests (several processes, kill -9, Ctrl-C, PostgreSQL) are in test_sweep_workers.py.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers.cli import assert_refused, run, run_python
from helpers.data import write_regression_table
from helpers.faults import read_only
from helpers.plots import needs_matplotlib

SPACE = "lr = {log = [0.5, 5]}\nhidden = {int = [8, 24], log = true}\n"


def space_file(tmp_path: Path, text: str = SPACE) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(text)
    return path


@pytest.fixture
def optuna():
    return pytest.importorskip("optuna")


def test_import_gpumlp_does_not_import_optuna():
    code = "import sys, gpumlp, gpumlp.sweeps.studies, gpumlp.sweeps.searchspace, gpumlp.cli\n"
    code += "print(sorted(m for m in sys.modules if m.split('.')[0] in ('optuna', 'sqlalchemy')))"
    assert run_python(code).strip() == "[]"


def test_without_optuna_the_command_says_how_to_install(tmp_path, bar_mnist, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    for argv in (
        ["sweep", space_file(tmp_path), "--data", bar_mnist, "--out", tmp_path / "out"],
        ["sweep", "--report", tmp_path],
    ):
        code, out, err = run(*argv)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and "pip install 'gpumlp[sweep]'" in err
    assert not (tmp_path / "out").exists()


BAD_SPACES = [
    ("foo = {log = [0.1, 1]}", "foo", "not a gpumlp train flag"),
    ('data = {choice = ["a.npz"]}', "data", "not a flag that can be searched"),
    ("lr = {uniform = [0.1, 1]}", "lr", "unknown distribution 'uniform'"),
    ("lr = {log = [0.1, 1], float = [0.1, 1]}", "lr", "exactly one of"),
    ("lr = {}", "lr", "exactly one of"),
    ("lr = 0.5", "lr", "expected a table"),
    ("lr = {log = [1, 0.1]}", "lr", "low must be below high"),
    ("l2 = {float = [0.5, 0.5]}", "l2", "low must be below high"),
    ("lr = {log = [0, 1]}", "lr", "log range needs low > 0"),
    ("hidden = {int = [0, 30], log = true}", "hidden", "log range needs low > 0"),
    ("hidden = {int = [10.5, 30]}", "hidden", "two integers"),
    ("lr = {log = [0.1]}", "lr", "[low, high]"),
    ("batch_size = {choice = 10}", "batch_size", "choice must be a non-empty list"),
    ("batch_size = {choice = []}", "batch_size", "choice must be a non-empty list"),
    ("batch_size = {choice = [10, 10]}", "batch_size", "holds a value twice"),
    ("batch_size = {choice = [10, 2.5]}", "batch_size", "2.5 is refused"),
    ("lr = {choice = [0.1, 1], log = true}", "lr", "not choice"),
    ("lr = {float = [-1, 1]}", "lr", "-1 is refused"),
    ("momentum = {float = [0.5, 1]}", "momentum", "1 is refused"),
    ('optimizer = {choice = ["sgd", "adamw"]}', "optimizer", "'adamw'"),
    ('hidden = {choice = ["30", "30,x"]}', "hidden", "widths"),
    (
        'activation = {choice = ["sigmoid", "relu"]}\n'
        'cost = {choice = ["quadratic", "cross_entropy"]}',
        "activation",
        "activation = 'relu' with cost = 'cross_entropy' is refused",
    ),
    ("lr = {log = [0.1, 1]", "space.toml", "not valid TOML"),
    ("", "space.toml", "searches no flag"),
]


@pytest.mark.parametrize(("text", "key", "why"), BAD_SPACES, ids=[b[0][:40] for b in BAD_SPACES])
def test_a_bad_space_entry_is_refused_naming_its_key(tmp_path, bar_mnist, optuna, text, key, why):
    out = tmp_path / "out"
    argv = ["sweep", space_file(tmp_path, text), "--data", bar_mnist, "--out", out]
    code, stdout, err = run(*argv, "--backend", "numpy")
    assert_refused(code, err, re.escape(why))
    assert stdout == ""
    assert key in err, err
    assert not out.exists()  # refused before anything is written


def test_a_regression_is_refused_before_anything_is_written(tmp_path, optuna):
    # a sweep maximizes the validation accuracy, which a regression has not
    data, _, _ = write_regression_table(tmp_path / "reg.csv", 60)
    out = tmp_path / "out"
    code, stdout, err = run("sweep", space_file(tmp_path), "--data", data, "--out", out)
    assert_refused(code, err, r"reg.csv: its task is regression, but a sweep maximizes the "
                              r"validation accuracy of classes")  # fmt: skip
    assert stdout == "" and not out.exists()


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (["--lr", "0.5"], "lr is searched, so --lr cannot fix it"),
        (["--sizes", "784,20,10"], "hidden is searched, so --sizes cannot fix it"),
        (["--monitor-set", "test"], "never the test"),
        (["--trials", "0"], "--trials"),
        (["--pruner", "bogus"], "--pruner"),
    ],
)
def test_flags_that_cannot_go_with_the_space_are_refused(tmp_path, bar_mnist, optuna, flags, why):
    out = tmp_path / "out"
    code, _, err = run("sweep", space_file(tmp_path), "--data", bar_mnist, "--out", out, *flags)
    assert_refused(code, err, re.escape(why))
    assert not out.exists()


def test_sizes_that_do_not_fit_the_target_columns_are_refused_before_any_trial(tmp_path, optuna):
    # The check train makes (runner.layers_for) holds for a sweep's fixed --sizes as well.
    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.random((20, 3)))
    np.save(tmp_path / "Y4.npy", np.eye(4)[np.arange(20) % 4])
    out = tmp_path / "out"
    data = ["--data", tmp_path / "X.npy", "--labels", tmp_path / "Y4.npy"]
    space = space_file(tmp_path, "lr = {log = [0.5, 5]}\n")
    code, _, err = run("sweep", space, *data, "--sizes", "3,5,3", "--out", out)
    assert_refused(code, err, "--sizes 3,5,3 ends with 3 outputs, but the targets y have 4 columns")
    assert not out.exists()


def test_report_of_a_folder_without_a_study(tmp_path, optuna):
    code, out, err = run("sweep", "--report", tmp_path)
    assert_refused(code, err, "no sweep there")
    assert out == ""


def test_report_of_a_missing_study(tmp_path, bar_mnist, optuna):
    argv = ["sweep", space_file(tmp_path), "--data", bar_mnist, "--out", tmp_path / "s"]
    assert run(*argv, "--trials", "1", "--epochs", "1", "--backend", "numpy")[0] == 0
    code, _, err = run("sweep", "--report", tmp_path / "s", "--study", "other")
    assert code == 2 and "no study 'other'" in err


@pytest.mark.parametrize(
    ("psycopg2", "psycopg", "given", "expected"),
    [
        (False, True, "postgresql://u:pw@db/s", "postgresql+psycopg://u:pw@db/s"),
        (False, True, "postgres://db/s", "postgresql+psycopg://db/s"),
        (True, True, "postgresql://db/s", "postgresql://db/s"),  # SQLAlchemy's default driver
        (False, False, "postgres://db/s", "postgresql://db/s"),  # its error names the driver
        (False, True, "postgresql+pg8000://db/s", "postgresql+pg8000://db/s"),  # named: kept
        (False, True, "sqlite:///x/study.db", "sqlite:///x/study.db"),
        (False, True, "mysql://db/s", "mysql://db/s"),
    ],
)
def test_a_bare_postgresql_url_takes_the_installed_driver(
    monkeypatch, psycopg2, psycopg, given, expected
):
    import importlib.util

    from gpumlp.sweeps import storage

    found = {"psycopg2": psycopg2, "psycopg": psycopg}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if found[name] else None)
    assert storage.with_driver(given) == expected
    assert storage.storage_url(Path("x"), given) == expected


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A sweep of 6 trials on ``bar_digits`` (one worker, in this process) and its output."""
    pytest.importorskip("optuna")
    from helpers.data import write_bar_mnist

    tmp = tmp_path_factory.mktemp("sweep")
    data = write_bar_mnist(tmp / "bars.npz", 480, 100)
    argv = ["sweep", space_file(tmp), "--data", data, "--out", tmp / "out", "--trials", "6"]
    argv += ["--epochs", "3", "--cost", "cross_entropy", "--backend", "numpy", "--seed", "3"]
    code, out, err = run(*argv)
    assert code == 0, err
    return tmp / "out", out, data


def test_each_trial_is_a_run_folder_scored_on_validation(finished, optuna):
    import gpumlp

    out, printed, data = finished
    study = optuna.load_study(study_name="space", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.get_trials()
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials) == 6
    assert sorted(p.name for p in out.glob("trial-*")) == [f"trial-{t.number:04d}" for t in trials]
    with np.load(data) as f:  # the validation split: the last 1/6 of the training images
        x_val = f["x_train"][-80:].reshape(80, 784).astype(np.float32) / 255
        y_val = f["y_train"][-80:]
    for t in trials:
        folder = out / f"trial-{t.number:04d}"
        args = json.loads((folder / "args.json").read_text())
        assert args["lr"] == t.params["lr"] and args["hidden"] == [t.params["hidden"]]
        assert args["monitor_set"] == "validation" and args["seed"] == 3
        history = json.loads((folder / "history.json").read_text())
        assert history["scored_set"] == "validation"
        assert len(history["epochs"]) == len(t.intermediate_values)
        if t.state.name == "COMPLETE":
            model = gpumlp.load(folder / "model.npz", backend="numpy")
            assert model.evaluate(x_val, y_val)["accuracy"] == pytest.approx(t.value)
    best = study.best_trial
    assert study.user_attrs["test"]["trial"] == best.number
    assert f"best: trial {best.number}:" in printed
    assert f"test accuracy of trial {best.number}: " in printed


@needs_matplotlib
def test_report_prints_the_trials_best_first_and_draws_plots(finished):
    out, _, _ = finished
    for png in ("history.png", "importance.png"):
        (out / png).unlink(missing_ok=True)
    code, printed, err = run("sweep", "--report", out)
    assert code == 0, err
    lines = printed.splitlines()
    assert lines[1].split() == ["trial", "state", "value", "lr", "hidden", "epochs"]
    rows = [line.split() for line in lines[2:8]]
    values = [float(r[2]) for r in rows if r[1] == "complete"]
    assert values == sorted(values, reverse=True) and len(rows) == 6
    command = next(line for line in lines if line.startswith("best flags: gpumlp train "))
    assert "--cost cross_entropy" in command and "--seed 3" in command
    assert f"--hidden {rows[0][4]}" in command
    assert (out / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "importance.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_matplotlib_still_prints_the_table(finished, monkeypatch):
    out, _, _ = finished
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, printed, _ = run("sweep", "--report", out)
    assert code == 0 and "trial  state" in printed
    assert printed.splitlines()[-1] == (
        "matplotlib is not installed: no plots (pip install 'gpumlp[plot]')"
    )


def test_rerunning_resumes_and_another_space_or_flag_is_refused(finished, optuna):
    out, _, data = finished
    argv = ["sweep", out.parent / "space.toml", "--data", data, "--out", out, "--trials", "7"]
    argv += ["--epochs", "3", "--cost", "cross_entropy", "--backend", "numpy", "--seed", "3"]
    code, printed, err = run(*argv)
    assert code == 0, err
    assert "7 finished trials" in printed and len(list(out.glob("trial-*"))) == 7
    code, _, err = run(*argv[:-1], "4")  # --seed 4
    assert code == 2 and "was started with --seed 3, not 4" in err
    (out.parent / "other.toml").write_text("lr = {log = [0.5, 2]}\n")
    code, _, err = run(*argv[:1], out.parent / "other.toml", *argv[2:], "--study", "space")
    assert code == 2 and "searches" in err and "rerun with the same space" in err


def blobs_split(n=180, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = np.eye(3, 4)[y] * 2 + 0.3 * rng.standard_normal((n, 4))
    return X, y


def test_data_the_network_dtype_cannot_hold_is_refused_before_any_trial(tmp_path, optuna):
    # The space's cases are planned on the same data: its values are checked (once) among them.
    X = np.random.default_rng(0).random((20, 3))
    X[17, 2] = 1e300  # finite in float64, inf in float32
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.arange(20) % 2)
    out = tmp_path / "out"
    data = ["--data", tmp_path / "X.npy", "--labels", tmp_path / "y.npy", "--dtype", "float32"]
    space = space_file(tmp_path, "lr = {log = [0.5, 5]}\nbatch_size = {choice = [2, 4]}\n")
    code, _, err = run("sweep", space, *data, "--hidden", "4", "--seed", "1", "--out", out)
    assert_refused(code, err, r"hold 1e\+300 at index \(\d+, 2\), which overflows float32")
    assert not out.exists()


def test_python_api_holds_out_validation_and_scores_test_once(tmp_path, optuna):
    import gpumlp
    from gpumlp import sweep
    from gpumlp.data.sources import hold_out

    X, y = blobs_split(240)
    space = {"lr": {"log": [0.3, 3]}, "batch_size": {"choice": [5, 10]}}
    study = sweep(
        space,
        X[:180],
        y[:180],
        test_data=(X[180:], y[180:]),
        n_trials=3,
        out=tmp_path,
        epochs=3,
        hidden=[6],
        backend="numpy",
        pruner="none",
        seed=3,
    )
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    best = study.best_trial
    model = gpumlp.load(tmp_path / f"trial-{best.number:04d}" / "model.npz", backend="numpy")
    _, validation = hold_out((X[:180], y[:180]), 1 / 6, 3)  # 30 rows drawn by the seed
    assert model.evaluate(*validation)["accuracy"] == pytest.approx(best.value)
    assert study.user_attrs["test"]["accuracy"] == model.evaluate(X[180:], y[180:])["accuracy"]
    with pytest.raises(TypeError, match="'learning_rate'"):
        sweep(space, X, y, learning_rate=1.0)
    with pytest.raises(ValueError, match="space: lr: a log range needs low > 0"):
        sweep({"lr": {"log": [0, 1]}}, X, y, out=tmp_path / "x")


def test_a_pruned_trial_leaves_a_stopped_run_and_the_worker_goes_on(tmp_path, optuna):
    import gpumlp
    from gpumlp import sweep
    from gpumlp.files.checkpoint import read_checkpoint

    X, y = blobs_split()
    # Nothing reaches accuracy 2: every trial is pruned after its second epoch (step 1).
    pruner = optuna.pruners.ThresholdPruner(lower=2.0, n_warmup_steps=1)
    study = sweep(
        {"lr": {"log": [0.5, 2]}},
        X,
        y,
        n_trials=2,
        out=tmp_path,
        epochs=6,
        hidden=[5],
        backend="numpy",
        pruner=pruner,
    )
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    for t in study.trials:
        folder = tmp_path / f"trial-{t.number:04d}"
        history = json.loads((folder / "history.json").read_text())
        assert [r["epoch"] for r in history["epochs"]] == [0, 1]
        assert history["stop_reason"].startswith("stopped after epoch 1: pruned")
        assert (folder / "history.csv").read_text().count("\n") == 3
        meta, arrays = read_checkpoint(folder / "checkpoint.npz")
        assert meta["epoch"] == 2
        model = gpumlp.load(folder / "model.npz", backend="numpy")
        for i, tensor in enumerate(model.params.arrays()):  # the model is the checkpoint's
            np.testing.assert_array_equal(tensor, arrays[f"param/{i}"])
        assert not (folder / ".lock").exists()


# -- hardening (issue 28): the study's file, its storage, the space's size, the data, --out ------


def one_trial(tmp_path: Path, data, out: Path, *more) -> tuple[int, str, str]:
    """``gpumlp sweep`` of SPACE for one trial of one epoch on ``data`` into ``out``."""
    argv = ["sweep", space_file(tmp_path), "--data", data, "--out", out, "--trials", "1"]
    return run(*argv, "--epochs", "1", "--backend", "numpy", "--seed", "1", *more)


def test_a_read_only_study_file_is_one_line_naming_it(tmp_path, bar_mnist, optuna):
    out = tmp_path / "out"
    assert one_trial(tmp_path, bar_mnist, out)[0] == 0
    with read_only(out / "study.db"):
        code, _, err = one_trial(tmp_path, bar_mnist, out, "--trials", "2")
    assert_refused(code, err, "readonly database")
    assert repr(str((out / "study.db").resolve())) in err
    assert len(optuna.load_study(study_name="space", storage=f"sqlite:///{out}/study.db").trials)


@pytest.mark.parametrize("how", ["sweep.json", "--storage"])
def test_a_storage_that_is_no_database_is_one_line_naming_the_file(
    tmp_path, bar_mnist, how, optuna
):
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n" * 100)
    out = tmp_path / "out"
    if how == "sweep.json":
        out.mkdir()
        info = {"study": "space", "storage": f"sqlite:///{junk}", "space": "space.toml"}
        (out / "sweep.json").write_text(json.dumps(info))
        code, _, err = run("sweep", "--report", out)
    else:
        code, _, err = one_trial(tmp_path, bar_mnist, out, "--storage", f"sqlite:///{junk}")
        assert not out.exists()
    assert_refused(code, err, "file is not a database")
    assert repr(str(junk)) in err
    assert junk.read_text() == "not a database\n" * 100


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_a_study_in_memory_is_refused_up_front(tmp_path, bar_mnist, optuna, url):
    out = tmp_path / "out"
    code, stdout, err = one_trial(tmp_path, bar_mnist, out, "--storage", url)
    assert_refused(code, err, f"--storage {re.escape(url)}: a study in memory")
    assert stdout == "" and not out.exists()


def test_a_choice_of_a_million_values_is_refused_naming_the_flag_and_the_limit(optuna):
    from gpumlp import sweep

    X, y = blobs_split(30)
    space = {"batch_size": {"choice": list(range(1, 1_000_001))}}
    with pytest.raises(
        ValueError, match=r"space: batch_size: choice holds 1,000,000 values, more than the 1,000"
    ):
        sweep(space, X, y, n_trials=1, epochs=1, hidden=[3], backend="numpy")


def test_a_choice_at_the_limit_is_checked_whole(tmp_path, bar_mnist, optuna):
    # Every value is still checked: the limit keeps that check short, it does not skip it.
    values = [*range(1, 1000), 0]  # 1,000 values, the last refused
    space = space_file(tmp_path, f"batch_size = {{choice = {values}}}\n")
    out = tmp_path / "out"
    code, _, err = run("sweep", space, "--data", bar_mnist, "--out", out, "--backend", "numpy")
    assert_refused(code, err, r"batch_size: 0 is refused")
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"lr = {log = [0.5, 5]}\n# \xff\xfe\n", "not UTF-8"),
        (b"lr = " + b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deep"),
        (b"# padding\n" * 200_000, "more than 1,048,576 bytes"),
    ],
    ids=["latin-1", "deep", "huge"],
)
def test_a_space_file_that_is_no_toml_is_one_line_naming_it(
    tmp_path, bar_mnist, optuna, content, why
):
    space = tmp_path / "space.toml"
    space.write_bytes(content)
    out = tmp_path / "out"
    code, _, err = run("sweep", space, "--data", bar_mnist, "--out", out, "--backend", "numpy")
    assert_refused(code, err, re.escape(why))
    assert repr(str(space)) in err or str(space) in err
    assert not out.exists()


def test_rerunning_a_study_on_other_data_is_refused(tmp_path, optuna):
    from helpers.data import write_tiny_mnist

    data = write_tiny_mnist(tmp_path / "tiny.npz", 120, 30)
    out = tmp_path / "out"
    assert one_trial(tmp_path, data, out)[0] == 0
    copy = tmp_path / "elsewhere.npz"  # the same data under another name (another machine)
    copy.write_bytes(Path(data).read_bytes())
    code, _, err = one_trial(tmp_path, copy, out, "--trials", "2")
    assert code == 0, err
    other = write_tiny_mnist(tmp_path / "other.npz", 120, 30, seed=5)  # same shapes
    code, _, err = one_trial(tmp_path, other, out, "--trials", "3")
    assert_refused(code, err, "was started on other data")
    assert "other.npz" in err
    assert len(list(out.glob("trial-*"))) == 2


def test_a_sweep_into_a_training_run_folder_is_refused(quick_run, optuna):
    data, run_dir = quick_run
    before = sorted(p.name for p in run_dir.iterdir())
    code, _, err = one_trial(run_dir.parent, data, run_dir)
    assert_refused(code, err, f"--out {re.escape(repr(str(run_dir)))} holds a training run")
    assert sorted(p.name for p in run_dir.iterdir()) == before


@pytest.mark.parametrize(
    "content",
    [
        b"{",
        b"[" * 30_000 + b"]" * 30_000,  # under the 64 KiB a sweep.json may hold
        b"[" * 40_000 + b"]" * 40_000,  # over it
        b'{"study": "space", "storage": "sqlite:///\xff"}',
        b"[]",
        b'{"study": "space", "storage": 5}',
        b'{"study": ["space"], "storage": "sqlite:///x.db"}',
    ],
    ids=["truncated", "deep", "huge", "latin-1", "a list", "storage 5", "study a list"],
)
def test_report_of_a_corrupt_sweep_json_is_one_line_naming_it(tmp_path, optuna, content):
    (tmp_path / "sweep.json").write_bytes(content)
    code, out, err = run("sweep", "--report", tmp_path)
    assert_refused(code, err, re.escape(repr(str(tmp_path / "sweep.json"))))
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["sweep.json"]


@needs_matplotlib
def test_report_into_a_read_only_folder_names_it_and_why(tmp_path, bar_mnist, optuna):
    out = tmp_path / "out"
    assert one_trial(tmp_path, bar_mnist, out)[0] == 0
    with read_only(out):
        code, printed, err = run("sweep", "--report", out)
    assert_refused(code, err, f"cannot write history.png into {re.escape(repr(str(out)))}: ")
    assert "Errno" not in err and "trial  state" in printed
    assert not list(out.glob("*.png")) and not list(out.glob(".*.tmp"))


def test_more_workers_than_the_cpus_take_is_refused_before_any_starts(tmp_path, bar_mnist, optuna):
    out = tmp_path / "out"
    code, stdout, err = one_trial(tmp_path, bar_mnist, out, "--workers", "1000")
    assert_refused(code, err, r"--workers 1000: this machine takes at most \d+ workers: ")
    assert stdout == "" and not out.exists()


def test_more_workers_than_the_memory_takes_is_refused_before_any_starts(
    tmp_path, bar_mnist, optuna, monkeypatch
):
    import gpumlp.memory

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(gpumlp.memory, "host_available_memory", lambda: 300 << 20)
    out = tmp_path / "out"
    code, stdout, err = one_trial(tmp_path, bar_mnist, out, "--workers", "8")
    assert_refused(code, err, r"--workers 8: this machine takes at most [12] workers: each ")
    assert "300.0 MiB of memory is free" in err
    assert stdout == "" and not out.exists()
