"""Tests for gpumlp.files.jsonfile: a run folder's JSON files read as untrusted input, every
fault one ValueError naming the file (a FIFO is refused at once: tests/test_rundir.py,
tests/test_cli_inspect.py and tests/test_cli_tools.py drive it through the command in a
subprocess, whose time limit turns a hang into a failure)."""

from __future__ import annotations

import pytest

from gpumlp.files.jsonfile import MAX_DEPTH, read_json


def test_reads_what_gpumlp_writes(tmp_path):
    path = tmp_path / "args.json"
    path.write_text('{"sizes": [3, 4, 2], "data": "d\\u00e9j\\u00e0.csv", "nested": [[[1]]]}')
    assert read_json(path, "flags file") == {
        "sizes": [3, 4, 2],
        "data": "déjà.csv",
        "nested": [[[1]]],
    }


BAD_JSON = [
    ("truncated", b'{"sizes": [3,', r"is not valid JSON: Expecting value: line 1 column 14"),
    ("not-utf8", b'{"data": "\xff"}', r"is not UTF-8 text \(byte 10 is 0xff\)"),
    ("empty", b"", r"is not valid JSON: Expecting value"),
    (
        "deep-for-the-parser",
        b"[" * 200_000 + b"]" * 200_000,
        rf"nests lists or objects more than {MAX_DEPTH} deep",
    ),
    (
        "deep",
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
        rf"nests lists or objects more than {MAX_DEPTH} deep",
    ),
    (
        "deep-object",
        b'{"a": ' * 40 + b"1" + b"}" * 40,
        rf"nests lists or objects more than {MAX_DEPTH} deep",
    ),
]


@pytest.mark.parametrize(("raw", "message"), [pytest.param(*c[1:], id=c[0]) for c in BAD_JSON])
def test_bad_json_is_one_value_error_naming_the_file(raw, message, tmp_path):
    path = tmp_path / "args.json"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=rf"^flags file '{path}' {message}") as info:
        read_json(path, "flags file")
    assert "\n" not in str(info.value)


def test_as_deep_as_allowed_is_read(tmp_path):
    path = tmp_path / "deep.json"
    path.write_bytes(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    assert read_json(path, "history") is not None


def test_a_file_past_the_limit_is_refused_unread(tmp_path):
    path = tmp_path / "history.json"
    path.write_bytes(b"[" + b"0," * 1000 + b"0]")
    with pytest.raises(ValueError, match=r"^history '.*history.json' holds more than 100 bytes"):
        read_json(path, "history", limit=100)


def test_a_folder_is_refused_and_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(ValueError, match=r"is a directory, not a regular file"):
        read_json(tmp_path, "flags file")
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "nope.json", "flags file")
