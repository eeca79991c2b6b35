"""The scenario schema: shipped scenarios validate; malformed ones exit 2 with one line naming the
field, without a traceback, and write nothing."""

from pathlib import Path

import pytest

from simulator.cli import main
from simulator.scenario import CHANNEL_NAMES, Scenario, load_scenario
from tests.conftest import REPO_ROOT

SHIPPED = ["vqa_8users.yaml", "multitask.yaml"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_validate_and_say_what_they_model(name):
    path = REPO_ROOT / "scenarios" / name
    scenario = load_scenario(path)
    text = path.read_text()
    assert text.startswith("#") and "What it models" in text and "same scene" in text
    assert scenario.traffic.shared_task_probability > 0
    assert scenario.sharing.include_off and scenario.sharing.thresholds
    assert len(scenario.traffic.active_tasks()) >= 1


def test_the_efficiency_scenario_is_what_its_figure_compares():
    scenario = load_scenario(REPO_ROOT / "scenarios" / "efficiency.yaml")
    assert {"m4sc", "digital_answer", "deepsc_vqa"} <= set(scenario.systems) and scenario.num_users == 8
    assert scenario.snr_db == [0, 5, 10, 15, 20] and scenario.channel.name == "awgn"
    assert scenario.sharing.include_off and scenario.sharing.thresholds
    assert {s.mode for s in scenario.adaptation} == {"fixed", "snr", "importance"}
    assert scenario.tasks_per_point() >= 1000 and scenario.traffic.active_tasks() == ["vqa"]


def test_vqa_8users_sweeps_minus5_to_20_db_with_sharing_on_and_off():
    scenario = load_scenario(REPO_ROOT / "scenarios" / "vqa_8users.yaml")
    assert scenario.num_users == 8
    assert scenario.traffic.active_tasks() == ["vqa"]
    assert min(scenario.snr_db) <= -5 and max(scenario.snr_db) >= 20
    assert [v.enabled for v in scenario.sharing_variants()] == [False, True]


def test_multitask_scenario_mixes_tasks():
    scenario = load_scenario(REPO_ROOT / "scenarios" / "multitask.yaml")
    assert len(scenario.traffic.active_tasks()) >= 2


def test_channel_names_follow_the_registry():
    from channels.registry import CHANNEL_NAMES as REGISTRY

    assert tuple(CHANNEL_NAMES) == tuple(REGISTRY)


def test_system_names_follow_the_registry():
    from simulator.scenario import SYSTEM_NAMES
    from simulator.systems import SYSTEMS

    assert SYSTEM_NAMES == tuple(SYSTEMS)


def test_reading_a_scenario_does_not_import_torch():
    import subprocess
    import sys

    script = ("import sys; from simulator.scenario import load_scenario; "
              f"load_scenario({str(REPO_ROOT / 'scenarios' / 'vqa_8users.yaml')!r}, ['adaptation={{mode: snr}}']); "
              "print(sorted(m for m in ('torch', 'sionna', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_overrides_reach_nested_fields():
    scenario = load_scenario(REPO_ROOT / "scenarios" / "vqa_8users.yaml",
                             ["num_users=3", "snr_db=[1, 2]", "sharing.thresholds=[1.0]", "channel.name=rayleigh"])
    assert scenario.num_users == 3 and scenario.snr_db == [1.0, 2.0]
    assert [v.threshold for v in scenario.sharing_variants()] == [None, 1.0]
    assert scenario.channel.name == "rayleigh"


def test_drop_placement_sweeps_transmit_power_without_snr_list():
    scenario = Scenario.model_validate({"num_users": 2, "placement": {"mode": "drop", "tx_power_dbm": [20, 30]}})
    assert [p.tx_power_dbm for p in scenario.sweep_points()] == [20.0, 30.0]


MALFORMED = [
    ({"bogus": 1}, "bogus: unknown key"),
    ({"traffic": {"roundz": 3}}, "traffic.roundz: unknown key"),
    ({"num_users": "many"}, "num_users"),
    ({"num_users": -2}, "num_users"),
    ({"sharing": {"thresholds": [1.5]}}, "sharing.thresholds"),
    ({"sharing": {"thresholds": [-0.1]}}, "sharing.thresholds"),
    ({"snr_db": []}, "snr_db"),
    ({"snr_db": None}, "snr_db"),
    ({"model": {"checkpoint": "/no/such/checkpoint"}}, "model.checkpoint"),
    ({"systems": ["deepsc"]}, "systems"),
    ({"channel": {"params": {"bogus": 1}}}, "channel.params"),
    ({"channel": {"name": "rayleigh", "params": {"coherence_symbols": 0}}}, "channel.params"),
    ({"traffic": {"shared_task_probability": 2}}, "traffic.shared_task_probability"),
    ({"traffic": {"tasks": {"translate": 1.0}}}, "traffic.tasks"),
    ({"traffic": {"tasks": {"classify": 1.0}}, "data": {"text_dir": "/no/such/corpus"}}, "data.text_dir"),
    ({"data": {"clevr_dir": "/no/such/clevr"}}, "data.clevr_dir"),
    ({"model": {"channel_symbols_per_token": 3}}, "model.channel_symbols_per_token"),
]


@pytest.mark.parametrize("changes, field", MALFORMED, ids=[m[1] for m in MALFORMED])
def test_malformed_scenario_exits_2_naming_the_field(write_scenario, tmp_path, capsys, changes, field):
    out = tmp_path / "out"
    status = main(["run", str(write_scenario(changes)), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and field in err[0], err
    assert not out.exists()


def test_bad_override_exits_2(write_scenario, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["run", str(write_scenario()), "--out", str(out), "--set", "sharing.thresholds=[2]"])
    assert status == 2
    assert "sharing.thresholds" in capsys.readouterr().err
    assert not out.exists()


def test_missing_shipped_checkpoint_is_one_line(write_scenario, tmp_path, capsys, monkeypatch):
    import simulator.assets

    monkeypatch.setattr(simulator.assets, "SHIPPED_CHECKPOINT", tmp_path / "nothing_here")
    out = tmp_path / "out"
    status = main(["run", str(write_scenario({"model": {"checkpoint": None}})), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "model.checkpoint" in err[0] and "nothing_here" in err[0]
    assert not out.exists()


def test_existing_results_folder_is_left_alone(write_scenario, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.parquet").write_bytes(b"earlier result")
    status = main(["run", str(write_scenario()), "--out", str(out)])
    assert status == 2
    assert "--out" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["metrics.parquet"]
    assert (out / "metrics.parquet").read_bytes() == b"earlier result"


def test_no_traceback_in_a_fresh_interpreter(run_cli, write_scenario, tmp_path):
    out = tmp_path / "out"
    result = run_cli("run", str(write_scenario({"num_users": 0})), "--out", str(out), timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "num_users" in lines[0]
    assert not Path(out).exists()
