"""Malformed config files and paths: one line on stderr, exit status 2, no traceback, nothing written
(issue 18 points 2-6)."""

import os
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.config_io import read_yaml
from simulator.errors import UserError

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "vqa_8users.yaml"


def _refused(capsys, args: list[str], fragment: str, out: Path) -> str:
    status = main(args)
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert fragment in err, err
    assert not out.exists()
    return err


def _scenario_with(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_config_file_of_random_bytes_is_not_utf8(tmp_path, capsys, command):
    path = tmp_path / "noise.yaml"
    path.write_bytes(os.urandom(4096) + b"\xff")
    _refused(capsys, [command, str(path), "--out", str(tmp_path / "out")], "not UTF-8 text", tmp_path / "out")


def test_a_folder_given_as_the_scenario_says_so(tmp_path, capsys):
    _refused(capsys, ["run", str(tmp_path), "--out", str(tmp_path / "out")], "is a folder, not a config file",
             tmp_path / "out")


@pytest.mark.parametrize("text, key, line", [
    ("num_users: 4\nnum_users: 8\n", "num_users", 2),
    ("channel:\n  kind: awgn\nnum_users: 2\nchannel:\n  kind: rayleigh\n", "channel", 4),
    ("channel: {kind: awgn, kind: rayleigh}\n", "kind", 1),
])
def test_a_key_given_twice_is_refused_with_its_line(tmp_path, capsys, text, key, line):
    path = _scenario_with(tmp_path, text)
    err = _refused(capsys, ["run", str(path), "--out", str(tmp_path / "out")], f"duplicate key {key!r} on line {line}",
                   tmp_path / "out")
    assert str(path) in err


def test_merge_keys_may_be_overridden_once(tmp_path):
    path = _scenario_with(tmp_path, "base: &b {a: 1, b: 2}\nother:\n  <<: *b\n  a: 3\n")
    assert read_yaml(path) == {"base": {"a": 1, "b": 2}, "other": {"a": 3, "b": 2}}


@pytest.mark.parametrize("override, message", [
    ("num_users=true", "num_users: must be a number, not true"),
    ("snr_db=[0, false]", "snr_db: must be a list of numbers, not true/false"),
    ("sharing.include_off=1", "sharing.include_off: must be true or false, not 1"),
    ("accounting.bits_per_real=1000000000000000000000000000000", "accounting.bits_per_real: Input should be less than or equal to 64"),
])
def test_booleans_for_numbers_and_numbers_out_of_range_are_refused(tmp_path, capsys, override, message):
    _refused(capsys, ["run", str(SCENARIO), "--set", override, "--out", str(tmp_path / "out")], message,
             tmp_path / "out")


def test_booleans_are_refused_in_training_configs_too(tmp_path):
    from simulator.config_io import load_yaml_config
    from simulator.training.config import TrainConfig

    train_yaml = SCENARIO.parent / "train_tiny.yaml"
    with pytest.raises(UserError, match="stages.instruct.steps: must be a number, not true"):
        load_yaml_config(train_yaml, TrainConfig, ["stages.instruct.steps=true"])
    assert load_yaml_config(train_yaml, TrainConfig, ["stages.instruct.lr=1"]).stages["instruct"].lr == 1.0


@pytest.mark.parametrize("kind", ["file", "missing"])
def test_a_checkpoint_path_names_what_is_wrong_with_it(tmp_path, capsys, kind):
    path = tmp_path / "codec"
    if kind == "file":
        path.write_text("not a folder")
    fragment = "is a file, not a checkpoint folder" if kind == "file" else "checkpoint folder not found"
    _refused(capsys, ["run", str(SCENARIO), "--set", f"model.checkpoint={path}", "--out", str(tmp_path / "out")],
             fragment, tmp_path / "out")
