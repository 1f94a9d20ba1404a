"""scripts/example_data.py writes the README's example files, and the README's runs on them
print what it shows (timings aside): the README's output is this code's."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.cli import run

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def shown(command: str) -> tuple[list[str], str]:
    """The README's ``$ COMMAND`` line starting with ``command``: its arguments, and the output
    shown under it (up to the next ``$`` line or the block's end)."""
    found = re.search(rf"^\$ ({re.escape(command)}.*)\n((?:(?!\$ |```).*\n)*)", README, re.M)
    assert found, f"the README shows no {command!r}"
    return shlex.split(found[1]), found[2]


def untimed(text: str) -> str:
    return re.sub(r"\d+\.\d\d s\)", "s)", text)


def assert_shows(output: str, printed: str) -> None:
    """``printed`` is the README's ``output``, timings aside, where a line ``...`` of the README
    stands for any run of lines cut from the middle."""
    parts = [re.escape(part) for part in untimed(output).split("...\n")]
    assert re.fullmatch("(?:.*\n)*?".join(parts), untimed(printed)), printed


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("examples")
    script = ROOT / "scripts" / "example_data.py"
    subprocess.run([sys.executable, script, folder], check=True, capture_output=True)
    return folder


@pytest.mark.parametrize("data", ["flowers.csv", "blobs.npz", "prices.csv"])
def test_the_readme_runs_on_the_example_files_print_what_it_shows(examples, data, monkeypatch):
    monkeypatch.chdir(examples)
    argv, output = shown(f"gpumlp train --data {data}")
    code, stdout, stderr = run(*argv[1:], "--backend", "numpy")
    assert code == 0, stderr
    assert_shows(output, stdout)
    argv, output = shown(f"gpumlp eval runs/{Path(data).stem}")
    code, stdout, stderr = run(*argv[1:])
    assert code == 0, stderr
    assert stdout == output


@pytest.mark.parametrize("data", ["flowers.csv", "prices.csv"])
def test_the_readme_shows_the_first_row_of_each_csv(examples, data):
    _, output = shown(f"head -2 {data}")
    assert "".join((examples / data).read_text().splitlines(True)[:2]) == output


def _trained(examples: Path, data: str) -> None:
    """The README's run on ``data`` (trained by the test above, if it ran)."""
    if not (examples / "runs" / Path(data).stem).exists():
        argv, _ = shown(f"gpumlp train --data {data}")
        assert run(*argv[1:], "--backend", "numpy")[0] == 0


def _first_rows(examples: Path, data: str, out: str, columns: int) -> None:
    """``head -4 DATA | cut -d, -f1-COLUMNS > OUT``, as the README makes it."""
    _, output = shown(f"head -4 {data} | cut -d, -f1-{columns} > {out}")
    assert output == ""
    lines = (examples / data).read_text().splitlines()[:4]
    rows = (",".join(r.split(",")[:columns]) + "\n" for r in lines)
    (examples / out).write_text("".join(rows))


def test_the_readme_predictions_of_flowers_are_what_predict_writes(examples, monkeypatch):
    monkeypatch.chdir(examples)
    _trained(examples, "flowers.csv")
    _first_rows(examples, "flowers.csv", "new.csv", 4)
    argv, output = shown("gpumlp predict runs/flowers new.csv --proba")
    code, stdout, stderr = run(*argv[1:], "--backend", "numpy")
    assert code == 0 and stderr == "", stderr
    assert stdout == output
    argv, _ = shown("gpumlp predict runs/flowers new.csv --output")
    assert run(*argv[1:], "--backend", "numpy")[:2] == (0, "")
    assert (examples / "preds.csv").read_text() == shown("cat preds.csv")[1]


def test_the_readme_predictions_of_prices_are_the_values_predict_writes(examples, monkeypatch):
    monkeypatch.chdir(examples)
    _trained(examples, "prices.csv")
    _first_rows(examples, "prices.csv", "houses.csv", 3)
    argv, output = shown("gpumlp predict runs/prices houses.csv")
    code, stdout, stderr = run(*argv[1:], "--backend", "numpy")
    assert code == 0 and stderr == "", stderr
    assert stdout == output
