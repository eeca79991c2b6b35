"""``python -m simulator run`` end to end on a tiny random codec: the documented outputs, same seed ->
same metrics, threshold 1.0 == sharing off row by row, sharing saves bytes on identical tasks,
Ctrl-C keeps a valid partial result, Poisson traffic over a UMi drop."""

import json
import os

import pandas as pd
import pytest
import yaml

from simulator.cli import main
from simulator.results import COLUMNS, KEY_COLUMNS, METRIC_COLUMNS
from simulator.scenario import Scenario


@pytest.fixture
def finished_runs(write_scenario, tmp_path, capsys):
    """The base scenario run twice with the same seed (the first with --json); the outputs, what
    the --json run printed, and both runs' stderr."""
    path = write_scenario()
    outs = [tmp_path / "first", tmp_path / "second"]
    assert main(["run", str(path), "--out", str(outs[0]), "--json"]) == 0
    first = capsys.readouterr()
    assert main(["run", str(path), "--out", str(outs[1])]) == 0
    second = capsys.readouterr()
    return outs, first.out, (first.err, second.err)


def test_outputs_columns_config_and_manifest(finished_runs):
    (out, _), printed, _ = finished_runs
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "manifest.json", "metrics.parquet"]
    frame = pd.read_parquet(out / "metrics.parquet")
    assert list(frame.columns) == COLUMNS
    assert len(frame) == 2 * 3  # 2 SNR points x (off, thr 1.0, thr 0.9), one task kind
    assert set(frame["snr_db"]) == {0.0, 30.0}
    assert (frame["num_users"] == 3).all() and (frame["num_tasks"] == 3 * 2).all()
    assert (frame["bits_per_real"] == 8).all()
    expected = (frame["symbols_public"] + frame["symbols_private"]) * 2 * 8 / 8 + frame["overhead_bits"] / 8
    assert (frame["bytes_total"] - expected).abs().max() < 1e-9
    assert (frame["latency_mean_s"] >= frame["air_time_mean_s"]).all()

    resolved = yaml.safe_load((out / "config.yaml").read_text())
    again = Scenario.model_validate(resolved)  # the resolved config is a valid scenario again
    assert again.channel.params["equalizer"] == "mmse" and again.model.channel_symbols_per_token == 64

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["points_done"] == 2 and manifest["rows"] == 6
    assert manifest["seed"] == 7 and len(manifest["checkpoint_sha256"]) == 64
    assert manifest["bits_per_real"] == 8 and "torch" in manifest["versions"]
    assert manifest["pid"] == os.getpid() and manifest["host"]  # run in-process here

    rows = json.loads(printed)  # --json printed the summary rows and nothing else
    assert len(rows) == 6 and set(rows[0]) == set(COLUMNS)


def test_progress_goes_to_stderr_and_json_runs_quietly(finished_runs):
    _, _, (json_err, plain_err) = finished_runs
    assert json_err == ""  # no progress, and no warning of any library
    # Not a terminal here: tqdm's plain-text bar (first and last state at least), with the points.
    assert "point 2/2" in plain_err and "100%" in plain_err and "task" in plain_err


def test_same_seed_gives_identical_metrics(finished_runs):
    (first, second), _, _ = finished_runs
    a = pd.read_parquet(first / "metrics.parquet")
    b = pd.read_parquet(second / "metrics.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert (first / "metrics.parquet").read_bytes() == (second / "metrics.parquet").read_bytes()


def test_threshold_one_equals_sharing_off_row_by_row(finished_runs):
    (out, _), _, _ = finished_runs
    frame = pd.read_parquet(out / "metrics.parquet")
    off = frame[~frame["sharing"]].reset_index(drop=True)
    one = frame[frame["threshold"] == 1.0].reset_index(drop=True)
    assert len(off) == len(one) == 2
    pd.testing.assert_frame_equal(off[METRIC_COLUMNS], one[METRIC_COLUMNS])
    keys = [k for k in KEY_COLUMNS if k not in ("sharing", "threshold")]
    pd.testing.assert_frame_equal(off[keys], one[keys])
    assert (one["symbols_public"] == 0).all() and (one["overhead_bits"] == 0).all()


def test_sharing_identical_tasks_reduces_bytes(write_scenario, tmp_path, capsys):
    out = tmp_path / "out"
    path = write_scenario({"traffic": {"shared_task_probability": 1.0}, "snr_db": [20.0],
                           "sharing": {"thresholds": [0.9]}})
    assert main(["run", str(path), "--out", str(out), "--json"]) == 0
    rows = {row["sharing"]: row for row in json.loads(capsys.readouterr().out)}
    on, off = rows[True], rows[False]
    assert on["same_scene_fraction"] == 1.0
    assert on["sharing_ratio"] == 1.0 and on["symbols_private"] == 0 and on["symbols_public"] > 0
    assert off["symbols_public"] == 0 and off["symbols_private"] == off["symbols_no_sharing"]
    assert on["bytes_total"] <= off["bytes_total"] / 3 + on["overhead_bits"] / 8  # 3 users -> one broadcast


def test_interrupted_run_keeps_finished_points(write_scenario, tmp_path, monkeypatch, capsys):
    from simulator.engine import SweepRunner

    original = SweepRunner.run_point
    calls = []

    def run_point_then_interrupt(self, point, on_batch=None):
        calls.append(point)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, point, on_batch)

    monkeypatch.setattr(SweepRunner, "run_point", run_point_then_interrupt)
    out = tmp_path / "out"
    assert main(["run", str(write_scenario()), "--out", str(out)]) == 130
    said = [line for line in capsys.readouterr().err.splitlines() if "interrupted" in line]
    assert said == [f"interrupted: 1 finished point(s) kept in {out}"]  # once, not again by the CLI
    frame = pd.read_parquet(out / "metrics.parquet")
    assert list(frame.columns) == COLUMNS and len(frame) == 3 and set(frame["snr_db"]) == {0.0}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["points_done"] == 1
    assert not list(out.glob("*.tmp"))


def test_poisson_traffic_over_a_umi_drop(write_scenario, tmp_path, capsys):
    out = tmp_path / "out"
    path = write_scenario({
        "snr_db": None,
        "placement": {"mode": "drop", "scenario": "umi", "tx_power_dbm": [30.0]},
        "traffic": {"mode": "poisson", "arrival_rate_hz": 100.0, "duration_s": 0.03, "batch_interval_s": 0.005,
                    "tasks": {"vqa": 1.0, "caption": 1.0}},
        "channel": {"name": "rayleigh"},
        "sharing": {"thresholds": [0.9]},
    })
    assert main(["run", str(path), "--out", str(out), "--json"]) == 0
    frame = pd.DataFrame(json.loads(capsys.readouterr().out))
    assert set(frame["task"]) <= {"vqa", "caption"} and len(frame) >= 2
    assert frame["tx_power_dbm"].eq(30.0).all()
    assert (frame["snr_db_user_min"] <= frame["snr_db"]).all() and (frame["snr_db"] <= frame["snr_db_user_max"]).all()
    assert (frame["latency_mean_s"] >= frame["air_time_mean_s"]).all()
    assert (frame["queueing_mean_s"] >= 0).all()
    assert frame.loc[frame["task"] == "caption", "bleu4"].notna().all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["drop"]["pathloss_db"]) == 3
