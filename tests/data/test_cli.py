"""``python -m simulator data ...``: exit status 2 with a message naming the bad path or field."""

from __future__ import annotations

import json

from simulator.cli import main

from .conftest import write_real_clevr_fixture


def test_stats_on_missing_directory(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["data", "stats", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(missing) in err and "\n" not in err


def test_stats_on_directory_without_questions(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert "questions" in capsys.readouterr().err


def test_stats_on_malformed_questions(tmp_path, capsys):
    root = write_real_clevr_fixture(tmp_path / "c")
    path = root / "questions/CLEVR_val_questions.json"
    path.write_text(json.dumps({"info": {}, "question": []}))
    assert main(["data", "stats", str(root)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'questions'" in err


def test_stats_on_real_layout_checks_programs(tmp_path, capsys):
    root = write_real_clevr_fixture(tmp_path / "c")
    assert main(["data", "stats", str(root), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["program_check"] == {"checked": 2, "mismatches": 0}


def test_clevr_command_and_bad_arguments(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["data", "clevr", "--out", str(out), "--num-images", "4", "--seed", "1", "--workers", "1", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["splits"]["train"]["num_images"] == 2 and (out / "stats.json").is_file()
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["data", "clevr", "--out", str(out), "--num-images", "4", "--seed", "1", "--json"]) == 0  # same command again
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    capsys.readouterr()
    foreign = tmp_path / "foreign"
    (foreign / "images" / "train").mkdir(parents=True)
    (foreign / "images" / "train" / "CLEVR_train_000000.png").write_bytes(b"real")
    assert main(["data", "clevr", "--out", str(foreign), "--num-images", "4"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["data", "clevr", "--out", str(out), "--num-images", "4", "--split-fractions", "1,2"]) == 2
    assert "--split-fractions" in capsys.readouterr().err


def test_text_aclimdb_needs_path(capsys, tmp_path):
    assert main(["data", "text", "--out", str(tmp_path), "--source", "aclimdb"]) == 2
    assert "--path" in capsys.readouterr().err
