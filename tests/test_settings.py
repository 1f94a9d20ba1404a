"""Tests for gpumlp.settings, the one table of settings: each entry's bounds, choices and defaults
reach the flags (``train``, ``sweep``, ``parity``), the records (``TrainConfig``, ``Network``,
``ModelSpec``), the run folder's ``args.json`` checks and the sweep's searchable set, and a
default that depends on the data reaches a run and a trial."""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
from types import MappingProxyType

import numpy as np
import pytest

import gpumlp
from gpumlp import settings
from gpumlp.cli._args import Parser, UsageError, add_train_flags, flag_kwargs
from gpumlp.config import ModelSpec, TrainConfig
from gpumlp.data.sources import DataSet
from gpumlp.errors import CheckpointError
from gpumlp.runs.rundir import check_flags
from gpumlp.settings import DEFAULTS, FLAGS, SEARCHABLE, SETTINGS, Setting, owned_by
from gpumlp.sweeps.searchspace import read_space, trial_flags
from helpers.bad_files import raises_exactly
from helpers.cli import assert_refused, run

NUMBERS = [s for s in SETTINGS.values() if s.kind in ("int", "float")]


def _flag(s: Setting) -> str:
    return "--" + s.name.replace("_", "-")


def _inside(s: Setting) -> float:
    """A value inside ``s``'s bounds, next to ``low``."""
    if s.high is not None:
        return (s.low + s.high) / 2
    return s.low + 1 if s.strict else s.low


def _outside(s: Setting) -> list[float]:
    """Values just outside ``s``'s bounds (``low`` itself when it is excluded)."""
    out = [s.low if s.strict else s.low - 1]
    return out + ([s.high, s.high + 1] if s.high is not None else [])


def _parse(*argv: str) -> dict:
    p = Parser(prog="gpumlp train")
    add_train_flags(p)
    return vars(p.parse_args(list(argv)))


def test_the_table_is_consistent():
    for s in SETTINGS.values():
        assert s.check(s.default) == s.default or s.kind == "path"  # its default is a value
        if s.group is not None:
            assert s.check_file(s.default) is None  # ... which args.json takes back
        if s.kind == "choice":
            assert s.noun and list(s.choices)
    assert list(FLAGS) == [s.name for s in SETTINGS.values() if s.group]
    assert set(SEARCHABLE) <= set(FLAGS)
    with pytest.raises(ValueError, match="read to load the data"):
        Setting("limit", "int", None, "data", low=1, table_default=lambda data: 10)
    with pytest.raises(ValueError, match="needs low"):
        Setting("width", "int", 3, "fit")


def test_the_flags_and_the_searchable_set_are_those_files_were_written_with():
    # args.json keeps its keys in this order, and SPACE.toml files name these flags: a setting
    # may be added (at the end of its group), never renamed or dropped.
    old = ["sizes", "hidden", "activation", "output_activation", "cost", "init", "dtype",
           "backend", "lr", "batch_size", "epochs", "seed", "optimizer", "momentum", "l2", "l1",
           "dropout", "schedule", "patience", "engine", "monitor_set", "data", "labels",
           "label_column", "val_split", "standardize", "limit", "checkpoint_every",
           "from_disk"]  # fmt: skip
    assert [name for name in FLAGS if name in old] == old
    assert set(SEARCHABLE) >= {"lr", "l2", "l1", "momentum", "dropout", "batch_size", "epochs",
                               "patience", "hidden", "optimizer", "schedule", "activation",
                               "output_activation", "cost", "init"}  # fmt: skip
    assert not set(SEARCHABLE) & {"data", "backend", "engine", "seed", "dtype", "sizes"}


# -- the flags ------------------------------------------------------------------------------------


@pytest.mark.parametrize("s", [s for s in NUMBERS if s.group], ids=lambda s: s.name)
def test_every_number_flag_takes_the_tables_bounds(s):
    kind = int if s.kind == "int" else float
    assert _parse(_flag(s), str(kind(_inside(s))))[s.name] == kind(_inside(s))
    for bad in _outside(s):
        with pytest.raises(UsageError, match=f"{_flag(s)}: must "):
            _parse(_flag(s), str(kind(bad)))


@pytest.mark.parametrize("s", [s for s in SETTINGS.values() if s.group], ids=lambda s: s.name)
def test_every_flag_is_made_from_its_entry(s):
    assert s.name not in _parse()  # unset: --resume may fill it
    if s.kind == "choice":
        for choice in s.choices:
            assert _parse(_flag(s), choice)[s.name] == choice
        with pytest.raises(UsageError, match="invalid choice"):
            _parse(_flag(s), "no-such-name")
    elif s.kind == "sizes":
        assert _parse(_flag(s), ",".join(["3"] * int(s.low)))[s.name] == [3] * int(s.low)
        with pytest.raises(UsageError, match=f"at least {s.low:g} positive"):
            _parse(_flag(s), ",".join(["3"] * (int(s.low) - 1) + ["0"]))
    elif s.kind == "bool":
        assert _parse(_flag(s))[s.name] is True
    elif s.kind == "text":
        assert _parse(_flag(s), "anything")[s.name] == "anything"


def test_a_flag_of_names_as_later_flags_need():
    # --drop COL[,COL...] of the tables issue: names with no fixed choices, and with some
    drop = Setting("drop", "names", None, "data", "columns to leave out", group="data")
    split = Setting("watch", "names", ("val_cost",), "run", choices=("val_cost", "val_accuracy"))
    p = Parser(prog="gpumlp train")
    p.add_argument("--drop", **flag_kwargs(drop))
    p.add_argument("--watch", **flag_kwargs(split))
    got = p.parse_args(["--drop", "id,0", "--watch", "val_accuracy,val_cost"])
    assert (got.drop, got.watch) == (["id", "0"], ["val_accuracy", "val_cost"])
    for argv, why in ((["--drop", "a,"], "comma-separated names"),
                      (["--watch", "val_loss"], "'val_loss' is not one of")):  # fmt: skip
        with pytest.raises(UsageError, match=why):
            p.parse_args(argv)
    assert drop.check(["id", "0"]) == ("id", "0") and drop.check(None) is None
    with raises_exactly(ValueError, "watch entry 'val_loss' is not"):
        split.check(["val_loss"])
    assert drop.check_file(["id", "0"]) is None and drop.check_file(None) is None
    assert drop.check_file("id") == split.check_file([3]) == "a list of strings"


def test_help_shows_every_flag_with_its_help_and_default():
    for command in ("train", "sweep"):
        code, out, _ = run(command, "--help")
        assert code == 0
        text = " ".join(out.split())
        for s in SETTINGS.values():
            if s.group is not None:
                default = s.shown or ("none" if s.default is None else s.default)
                tables = "" if s.table_default is None else f"; tables: {s.table_default.shown}"
                assert f"{s.help} (default {default}{tables})".strip() in text, (command, s.name)
            else:
                assert not re.search(re.escape(_flag(s)) + r"(?![-\w])", text), s.name


@pytest.mark.parametrize("name", ["momentum", "lr", "batch_size", "epochs", "seed"])
def test_parity_flags_take_the_tables_bounds(name, tmp_path):
    s = SETTINGS[name]
    for bad in _outside(s):
        code, _, err = run("parity", _flag(s), str(bad), "--json", tmp_path / "r.json")
        assert_refused(code, err, f"{_flag(s)}: must ")


# -- the records ----------------------------------------------------------------------------------


@pytest.mark.parametrize("s", [s for s in NUMBERS if s.owner == "fit"], ids=lambda s: s.name)
def test_train_config_refuses_what_the_table_refuses(s):
    kind = int if s.kind == "int" else float
    assert getattr(TrainConfig(**{s.name: kind(_inside(s))}), s.name) == kind(_inside(s))
    for bad in _outside(s):
        with raises_exactly(ValueError, f"^{s.name} must be "):
            TrainConfig(**{s.name: kind(bad)})
    with raises_exactly(TypeError, f"^{s.name} must be "):
        TrainConfig(**{s.name: "1"})


def test_records_and_signatures_take_the_tables_defaults():
    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert fields == {name: DEFAULTS[name] for name in owned_by("fit")}
    fit = inspect.signature(gpumlp.Network.fit).parameters
    init = inspect.signature(gpumlp.Network).parameters
    build = inspect.signature(ModelSpec.build).parameters
    for name in owned_by("fit"):
        assert name == "chunk" or fit[name].default == DEFAULTS[name], name
    for name in owned_by("network"):
        assert init[name].default == build[name].default == DEFAULTS[name], name
    assert fit["standardize"].default is DEFAULTS["standardize"]
    assert init["seed"].default is DEFAULTS["seed"]


def test_a_network_and_fit_refuse_what_the_table_refuses():
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    net = gpumlp.Network([2, 2], backend="numpy", seed=0)
    with raises_exactly(ValueError, "momentum must be < 1.0, got 1.0"):
        net.fit(X, y, optimizer="momentum", momentum=1.0)
    with raises_exactly(TypeError, "standardize must be True or False"):
        net.fit(X, y, standardize="yes")
    with raises_exactly(ValueError, "seed must be >= 0"):
        gpumlp.Network([2, 2], seed=-1)


# -- the run folder and the sweep -----------------------------------------------------------------


@pytest.mark.parametrize("s", [s for s in NUMBERS if s.group], ids=lambda s: s.name)
def test_args_json_refuses_what_the_table_refuses(s, tmp_path):
    source = tmp_path / "args.json"
    kind = int if s.kind == "int" else float
    assert check_flags({s.name: kind(_inside(s))}, source)
    wrong = [True, "1", 1.5 if kind is int else float("nan")]
    for bad in [*(kind(b) for b in _outside(s)), *wrong]:
        with pytest.raises(CheckpointError, match=f"'{s.name}' must be "):
            check_flags({s.name: bad}, source)


def test_a_resume_refuses_an_args_json_the_table_refuses(quick_run, tmp_path):
    _, out = quick_run
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("args.json", "checkpoint.npz"):
        (copy / name).write_bytes((out / name).read_bytes())
    args = json.loads((copy / "args.json").read_text())
    (copy / "args.json").write_text(json.dumps(args | {"dropout": 1.0}))
    code, _, err = run("train", "--resume", copy, "--epochs", "2")
    assert_refused(code, err, r"'dropout' must be a number in \[0, 1\), got 1.0")


def test_the_sweeps_searchable_set_is_the_tables():
    for name in SEARCHABLE:
        s = SETTINGS[name]
        if s.kind == "choice":
            entry = {"choice": list(s.choices)[:1]}
        elif s.kind == "sizes":
            entry = {"choice": ["8", "8,4"]}
        elif s.kind == "int":
            entry = {"int": [int(s.low) + 1, int(s.low) + 2]}
        else:
            low = _inside(s)
            entry = {"float": [low, low + 0.5 if s.high is None else (low + s.high) / 2]}
        dims, _ = read_space({name: entry})
        assert list(dims) == [name]
    for name in set(FLAGS) - set(SEARCHABLE):
        with pytest.raises(ValueError, match="not a flag that can be searched"):
            read_space({name: {"choice": [1]}})
    with pytest.raises(ValueError, match="momentum: 1 is refused"):
        read_space({"momentum": {"float": [0.5, SETTINGS["momentum"].high]}})


# -- defaults that depend on the data -------------------------------------------------------------


@pytest.fixture
def table_batch(monkeypatch):
    """The table with a table default of ``batch_size`` of 7 (the others as they are)."""
    table = dict(SETTINGS) | {"batch_size": dataclasses.replace(
        SETTINGS["batch_size"], table_default=lambda data: 7)}  # fmt: skip
    monkeypatch.setattr(settings, "SETTINGS", MappingProxyType(table))


def _table_data() -> DataSet:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)).astype(np.float32), np.arange(40) % 2
    return DataSet("t", (X[:32], y[:32]), (X[32:], y[32:]), None, "table")


def test_defaults_depend_on_the_data_only_where_an_entry_says(table_batch):
    data = _table_data()
    assert settings.defaults()["batch_size"] == 10
    tabled = {s.name for s in SETTINGS.values() if s.table_default is not None}
    assert {k for k, v in settings.defaults(data).items() if v != settings.defaults()[k]} == {
        k for k in tabled if SETTINGS[k].table_default(data) != SETTINGS[k].default} | {
        "batch_size"}  # fmt: skip
    assert settings.defaults(data)["batch_size"] == 7
    assert settings.defaults(dataclasses.replace(data, kind="images")) == settings.defaults()
    first = settings.defaults()
    first["sizes"].append(1)  # a caller's copy, never the table's
    assert settings.defaults()["sizes"] == DEFAULTS["sizes"] == [784, 30, 10]


def test_a_run_and_a_trial_take_the_datas_default_unless_given(table_batch, tmp_path, numpy_env):
    data = tmp_path / "t.npz"
    X, y = _table_data().train
    np.savez(data, X=X, y=y)
    flags = ["--hidden", "4", "--epochs", "1", "--quiet", "--val-split", "0.25"]
    assert run("train", "--data", data, *flags, "--out", tmp_path / "a")[0] == 0
    assert json.loads((tmp_path / "a" / "args.json").read_text())["batch_size"] == 7
    given = ["--batch-size", "5", "--out", tmp_path / "b"]
    assert run("train", "--data", data, *flags, *given)[0] == 0
    assert json.loads((tmp_path / "b" / "args.json").read_text())["batch_size"] == 5
    dims, _ = read_space({"lr": {"log": [0.1, 1.0]}})
    assert trial_flags(dims, {"lr": 0.5}, {"hidden": [4]}, _table_data())["batch_size"] == 7
    fixed = {"hidden": [4], "batch_size": 3}
    assert trial_flags(dims, {"lr": 0.5}, fixed, _table_data())["batch_size"] == 3
