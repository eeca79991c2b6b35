"""``python -m simulator sweep``: grid expansion and stable point ids, validation before anything is
written, parts + combined table, resume, a failing point, and one sweep through an embedded Ray."""

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import simulator.sweep.point as sweep_point
from simulator.cli import main
from simulator.errors import UserError
from simulator.results import COLUMNS
from simulator.sweep import SweepFile, expand_grid, load_sweep, point_id
from tests.conftest import REPO_ROOT

SMALL = {"num_users": 1, "snr_db": [20.0], "traffic": {"rounds": 1}, "sharing": {"thresholds": [0.9]}}


@pytest.fixture
def write_sweep(tmp_path, write_scenario):
    """``write_sweep(grid, set=None, **more) -> path``: a sweep over a tiny scenario (1 round, 1 SNR)."""

    def write(grid: dict, set_: dict | None = None, **more) -> Path:
        write_scenario(SMALL, name="base.yaml")
        data = {"name": "tiny-sweep", "base": "base.yaml", "set": set_ or {}, "grid": grid, **more}
        path = tmp_path / "sweep.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture
def count_runs(monkeypatch):
    """Counts the points that really ran (in this process)."""
    calls = []
    original = sweep_point._run_scenario

    def counted(base, overrides):
        calls.append(list(overrides))
        return original(base, overrides)

    monkeypatch.setattr(sweep_point, "_run_scenario", counted)
    return calls


def test_grid_expansion_and_stable_point_ids():
    sweep = SweepFile.model_validate({"base": "x.yaml", "set": {"traffic.rounds": 1},
                                      "grid": {"snr_db": [[0], [10, 20]], "seed": [0, 1, 2]}})
    points = expand_grid(sweep)
    assert len(points) == 6 and len({p.point_id for p in points}) == 6
    assert [p.grid_values for p in points[:2]] == [{"snr_db": [0], "seed": 0}, {"snr_db": [0], "seed": 1}]
    assert points[3].overrides == {"traffic.rounds": 1, "snr_db": [10, 20], "seed": 0}
    assert "snr_db=[10, 20]" in points[3].override_strings()
    # the id depends on the overrides only: key order does not matter, it never changes between runs
    assert point_id({"seed": 0, "snr_db": [0], "traffic.rounds": 1}) == points[0].point_id
    assert point_id({"a": 1}) == "015abd7f5c"
    # extending the grid keeps the ids of the old points (resume runs only the new ones)
    more = SweepFile.model_validate({"base": "x.yaml", "set": {"traffic.rounds": 1},
                                     "grid": {"snr_db": [[0], [10, 20], [30]], "seed": [0, 1, 2]}})
    assert {p.point_id for p in points} < {p.point_id for p in expand_grid(more)}
    # a float that YAML would read back as a string without care
    tiny = SweepFile.model_validate({"base": "x.yaml", "grid": {"traffic.duration_s": [1e-5]}})
    assert yaml.safe_load(expand_grid(tiny)[0].override_strings()[0].split("=", 1)[1]) == 1e-5


@pytest.mark.parametrize("data, fragment", [
    ({"base": "x.yaml", "grids": {}}, "grids: unknown key"),
    ({"base": "x.yaml", "grid": {"seed": []}}, "at least one value"),
    ({"base": "x.yaml", "grid": {"seed": [1, 1]}}, "distinct"),
    ({"base": "x.yaml", "set": {"seed": 1}, "grid": {"seed": [1, 2]}}, "both in set and in grid"),
])
def test_malformed_sweep_files(tmp_path, data, fragment):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match=fragment):
        load_sweep(path)


def test_bad_grid_key_exits_2_naming_it_and_writes_nothing(write_sweep, tmp_path, capsys):
    path = write_sweep({"num_users": [1, 2], "traffic.roundz": [1]})
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--local"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "traffic.roundz" in err[0] and "unknown key" in err[0]
    assert not out.exists()
    # a bad value in only one grid point is found before anything runs, too
    path = write_sweep({"num_users": [1, 0]})
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    assert "num_users" in capsys.readouterr().err and not out.exists()


def test_two_point_sweep_resume_and_same_rows_as_run(write_sweep, write_scenario, tmp_path, count_runs, capsys):
    path = write_sweep({"traffic.shared_task_probability": [0.0, 1.0]})
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--local"]) == 0
    assert len(count_runs) == 2
    parts = sorted(p.name for p in (out / "parts").iterdir())
    assert len(parts) == 4 and sum(p.endswith(".parquet") for p in parts) == 2
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "metrics.parquet", "parts", "sweep.yaml"]
    frame = pd.read_parquet(out / "metrics.parquet")
    assert list(frame.columns) == COLUMNS + ["traffic.shared_task_probability", "point_id"]
    assert len(frame) == 2 * 2  # 2 points x (sharing off, thr 0.9)
    assert sorted(frame["traffic.shared_task_probability"].unique()) == [0.0, 1.0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["points_ok"] == 2 and manifest["rows"] == 4
    from simulator.provenance import checkpoint_hash

    [codec] = manifest["codecs"]  # both points ran the same codec: recorded once, with its hash and base LLM
    assert codec["systems"] == ["m4sc"] and codec["codec_llm"] is None
    assert codec["checkpoint_sha256"] == checkpoint_hash(codec["checkpoint"])
    record = json.loads((out / "parts" / f"{frame['point_id'][0]}.json").read_text())
    assert record["status"] == "ok" and record["error"] is None and record["wall_s"] > 0
    resolved = load_sweep(out / "sweep.yaml")  # the resolved sweep is a valid sweep file
    assert Path(resolved.base).is_absolute() and resolved.grid == {"traffic.shared_task_probability": [0.0, 1.0]}

    # the same code path as `run`: a point's rows equal `run --set` of its overrides
    run_out = tmp_path / "run"
    base = tmp_path / "base.yaml"
    assert main(["run", str(base), "--out", str(run_out), "--set", "traffic.shared_task_probability=1.0"]) == 0
    ran = pd.read_parquet(run_out / "metrics.parquet")
    point = frame[frame["traffic.shared_task_probability"] == 1.0].reset_index(drop=True)
    pd.testing.assert_frame_equal(point[COLUMNS], ran[COLUMNS], check_dtype=False)

    # without --resume an existing folder is refused; with it, nothing reruns and the table is the same
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", str(out), "--local"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["sweep", str(path), "--out", str(out), "--local", "--resume"]) == 0
    assert len(count_runs) == 2
    pd.testing.assert_frame_equal(pd.read_parquet(out / "metrics.parquet"), frame)
    resumed = json.loads((out / "manifest.json").read_text())
    assert resumed["points_skipped"] == 2 and resumed["codecs"] == manifest["codecs"]
    # a point without an ok record runs again, the other one does not
    (out / "parts" / f"{frame['point_id'][0]}.json").unlink()
    assert main(["sweep", str(path), "--out", str(out), "--local", "--resume"]) == 0
    assert len(count_runs) == 3
    pd.testing.assert_frame_equal(pd.read_parquet(out / "metrics.parquet"), frame)


def test_failing_point_is_recorded_and_the_other_finishes(write_sweep, tiny_checkpoint, tmp_path, capsys):
    broken = tmp_path / "broken_checkpoint"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    path = write_sweep({"model.checkpoint": [str(tiny_checkpoint), str(broken)]})
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--local"]) == 1
    assert "failed" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["points_ok"] == 1 and manifest["points_error"] == 1
    failed = next(p for p in manifest["points"] if p["status"] == "error")
    record = json.loads((out / "parts" / f"{failed['point_id']}.json").read_text())
    assert record["status"] == "error" and "model.checkpoint" in record["error"]
    assert not (out / "parts" / f"{failed['point_id']}.parquet").exists()
    frame = pd.read_parquet(out / "metrics.parquet")
    assert len(frame) == 2 and set(frame["model.checkpoint"]) == {str(tiny_checkpoint)}


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def test_two_point_sweep_on_embedded_ray_leaves_no_ray_behind(write_sweep, tmp_path, capsys, monkeypatch):
    import ray

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    path = write_sweep({"num_users": [1, 2]}, resources={"num_cpus": 1, "num_gpus": 0})
    out = tmp_path / "out"
    began = time.perf_counter()
    assert main(["sweep", str(path), "--out", str(out), "--max-parallel", "2"]) == 0
    # Not a speed test: Ray waits forever on a resource it cannot meet; ~10 s normally, 600 s = hung.
    assert time.perf_counter() - began < 600
    assert not ray.is_initialized()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ray"]["mode"] == "local" and manifest["ray"]["address"].startswith("127.0.0.1:")
    # Ray's own default would write a new token to ~/.ray/auth_token and leave it there.
    assert Path(manifest["ray"]["auth_token"]).parent == Path(manifest["ray"]["temp_dir"])
    assert not (home / ".ray").exists()
    assert not any(os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"))
    assert manifest["points_ok"] == 2
    records = [json.loads(p.read_text()) for p in (out / "parts").glob("*.json")]
    assert sorted(r["grid"]["num_users"] for r in records) == [1, 2]
    frame = pd.read_parquet(out / "metrics.parquet")
    assert sorted(frame["num_users"].unique()) == [1, 2] and len(frame) == 4
    temp_dir = manifest["ray"]["temp_dir"]
    deadline = time.time() + 15
    while _processes_mentioning(temp_dir) and time.time() < deadline:
        time.sleep(0.5)
    assert _processes_mentioning(temp_dir) == []


@pytest.mark.parametrize("name", ["fig5.yaml", "fig6.yaml"])
def test_shipped_sweeps_validate(name):
    from simulator.sweep import plan_sweep

    path = REPO_ROOT / "scenarios" / name
    assert path.read_text().startswith("#")
    plan = plan_sweep(path, out=REPO_ROOT / "results" / "never-written")
    assert len(plan.points) == (18 if name == "fig5.yaml" else 15)
    expected = ["m4sc", "deepsc_vqa", "deepsc", "digital_source", "digital_answer"] if name == "fig5.yaml" \
        else ["m4sc", "deepsc_vqa"]
    assert all(s.systems == expected for s in plan.scenarios)
    assert not (REPO_ROOT / "results" / "never-written").exists()


def test_the_two_codec_fig5_sweep_is_fig5_plus_the_pretrained_codec():
    from simulator.sweep import plan_sweep

    fig5 = plan_sweep(REPO_ROOT / "scenarios" / "fig5.yaml", out=REPO_ROOT / "results" / "never-written")
    both = plan_sweep(REPO_ROOT / "scenarios" / "fig5_gemma.yaml", out=REPO_ROOT / "results" / "never-written")
    assert len(both.points) == len(fig5.points) == 18
    for plain, scenario in zip(fig5.scenarios, both.scenarios):
        assert scenario.systems == ["m4sc", "m4sc_gemma3_270m", *plain.systems[1:]]
        assert scenario.codecs == {"m4sc_gemma3_270m": "simulator/checkpoints/m4sc_gemma3_270m"}
        assert (REPO_ROOT / scenario.codecs["m4sc_gemma3_270m"] / "config.json").is_file()
        assert scenario.model_dump(exclude={"systems", "codecs", "name", "description"}) == \
            plain.model_dump(exclude={"systems", "codecs", "name", "description"})
