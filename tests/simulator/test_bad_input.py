"""Malformed config files and paths: one line on stderr, exit status 2, no traceback, nothing written
(issue 18 points 2-6)."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# ---- every section of a scenario: wrong types, out-of-range numbers, unknown keys, oversize ----
# Each case: the --set overrides of scenarios/vqa_8users.yaml and a fragment of the one-line error.
SCENARIO_CASES = [
    (["num_users=0"], "num_users: Input should be greater than or equal to 1"),
    (["num_users=-3"], "num_users: Input should be greater than or equal to 1"),
    (["num_users=2.5"], "num_users: Input should be a valid integer"),
    (["num_users=abc"], "num_users: Input should be a valid integer"),
    (["num_users=[1,2]"], "num_users: Input should be a valid integer"),
    (["num_users=null"], "num_users: Input should be a valid integer"),
    (["num_users=1000000000"], "workload too large: 1,000,000,000 users, num_users x traffic.rounds = 40,000,000,000"),
    (["num_users=1025"], "the limits are 1,024 users and 50,000 tasks per point"),
    (["traffic.rounds=20000"], "workload too large: 8 users, num_users x traffic.rounds = 160,000 tasks per point (~"),
    (["traffic.mode=poisson", "traffic.arrival_rate_hz=1e6", "traffic.duration_s=86400"],
     "num_users x traffic.arrival_rate_hz x traffic.duration_s = 691,200,000,000 tasks per point"),
    (["seed=-1"], "seed: Input should be greater than or equal to 0"),
    (["seed=1.5"], "seed: Input should be a valid integer"),
    (["seed=100000000000"], "seed: Input should be less than or equal to 4294967295"),
    (["snr_db=[]"], "snr_db: List should have at least 1 item"),
    (["snr_db=[nan]"], "snr_db: SNR (dB) must be a finite number"),
    (["snr_db=[inf]"], "snr_db: SNR (dB) must be a finite number"),
    (["snr_db=[1000]"], "snr_db: SNR (dB) must be in [-60, 100], got 1000"),
    (["snr_db=5"], "snr_db: Input should be a valid list"),
    (["snr_db=[0, x]"], "snr_db.1: Input should be a valid number"),
    (["systems=[]"], "systems: List should have at least 1 item"),
    (["systems=[m4sc, m4sc]"], "systems: systems must be distinct"),
    (["systems=[magic]"], "systems: unknown system 'magic'"),
    (["systems=m4sc"], "systems: Input should be a valid list"),
    (["codecs={gemma: /x}"], "codecs: name 'gemma': a codec compared as a system is named m4sc_<label>"),
    (["codecs={m4sc: /x}"], "codecs: name 'm4sc': a codec compared as a system is named m4sc_<label>"),
    (["systems=[m4sc, m4sc_other]"], "systems: unknown system 'm4sc_other'"),
    (["codecs={m4sc_other: /nonexistent/codec}", "systems=[m4sc, m4sc_other]"],
     "codecs.m4sc_other: checkpoint folder not found: /nonexistent/codec"),
    (["codecs={m4sc_other: simulator/checkpoints/deepsc_tiny}", "systems=[m4sc, m4sc_other]"],
     "codecs.m4sc_other: simulator/checkpoints/deepsc_tiny holds a deepsc baseline, not an M4SC codec"),
    (["num_threads=0"], "num_threads: Input should be greater than or equal to 1"),
    (["unknown_key=1"], "unknown_key: unknown key"),
    (["model=3"], "model: Input should be a valid dictionary"),
    (["model.unknown=1"], "model.unknown: unknown key"),
    (["model.max_new_tokens=0"], "model.max_new_tokens: Input should be greater than or equal to 1"),
    (["model.generation_batch_size=0"], "model.generation_batch_size: Input should be greater than or equal to 1"),
    (["model.device=tpu"], "model.device: Input should be 'cpu', 'cuda' or 'auto'"),
    (["model.checkpoint=/nonexistent/codec"], "model.checkpoint: checkpoint folder not found: /nonexistent/codec"),
    (["model.channel_symbols_per_token=7"], "model.channel_symbols_per_token: 7 differs from the checkpoint's"),
    (["data.preset=huge"], "data.preset: Input should be 'clevr' or 'clevr_small'"),
    (["data.num_images=0"], "data.num_images: Input should be greater than or equal to 1"),
    (["data.generator_seed=-1"], "data.generator_seed: Input should be greater than or equal to 0"),
    (["data.clevr_dir=/nonexistent/clevr"], "data.clevr_dir: folder not found: /nonexistent/clevr"),
    (["data.text_dir=/nonexistent/text", "traffic.tasks={classify: 1}"], "data.text_dir: sentiment corpus not found"),
    (["traffic.mode=burst"], "traffic.mode: Input should be 'snapshot' or 'poisson'"),
    (["traffic.rounds=0"], "traffic.rounds: Input should be greater than or equal to 1"),
    (["traffic.rounds=100000"], "traffic.rounds: Input should be less than or equal to 50000"),
    (["traffic.arrival_rate_hz=0"], "traffic.arrival_rate_hz: Input should be greater than 0"),
    (["traffic.arrival_rate_hz=1e300"], "traffic.arrival_rate_hz: Input should be less than or equal to 1000000"),
    (["traffic.duration_s=0"], "traffic.duration_s: Input should be greater than 0"),
    (["traffic.shared_task_probability=1.5"], "traffic.shared_task_probability: Input should be less than or equal to 1"),
    (["traffic.num_group_tasks=0"], "traffic.num_group_tasks: Input should be greater than or equal to 1"),
    (["traffic.batch_interval_s=0"], "traffic.batch_interval_s: Input should be greater than 0"),
    (["traffic.tasks={}"], "traffic.tasks: task weights must be in [0, 1e+06] and not all 0"),
    (["traffic.tasks={vqa: 1e30}"], "traffic.tasks: task weights must be in [0, 1e+06] and not all 0"),
    (["traffic.tasks={dance: 1}"], "traffic.tasks: unknown task 'dance'"),
    (["placement.mode=orbit"], "placement.mode: Input should be 'snr_list' or 'drop'"),
    (["placement.noise_figure_db=nan"], "placement.noise_figure_db: Input should be less than or equal to 50"),
    (["placement.carrier_frequency_hz=0"], "placement.carrier_frequency_hz: Input should be greater than or equal to"),
    (["placement.max_speed_mps=-1"], "placement.max_speed_mps: Input should be greater than or equal to 0"),
    (["placement.tx_power_dbm=[200]"], "placement.tx_power_dbm: tx_power_dbm must be in [-50, 80], got 200"),
    (["channel.name=magic"], "channel.name: Input should be 'awgn'"),
    (["channel.params={equalizer: magic}"], "channel.params: equalizer must be one of zf, mmse"),
    (["channel.params={foo: 1}"], "channel.params: unknown parameter 'foo' for channel 'awgn'"),
    (["sharing.thresholds=[1.5]"], "sharing.thresholds: threshold must be in [0, 1], got 1.5"),
    (["sharing.thresholds=[0.9, 0.9]"], "sharing.thresholds: thresholds must be distinct"),
    (["sharing.include_off=maybe"], "sharing.include_off: Input should be a valid boolean"),
    (["sharing.include_off=false", "sharing.thresholds=[]"], "give at least one threshold or set include_off: true"),
    (["sharing.stat_tolerance=-1"], "sharing.stat_tolerance: Input should be greater than or equal to 0"),
    (["resources.num_prbs=0"], "resources.num_prbs: Input should be greater than or equal to 1"),
    (["resources.num_prbs=100000"], "resources.num_prbs: Input should be less than or equal to 275"),
    (["resources.numerology=7"], "resources.numerology: Input should be less than or equal to 6"),
    (["resources.broadcast_share=1.5"], "resources.broadcast_share: Input should be less than or equal to 1"),
    (["resources.pf_beta=1"], "resources.pf_beta: Input should be less than 1"),
    (["accounting.bits_per_real=0"], "accounting.bits_per_real: Input should be greater than or equal to 1"),
    (["baselines.digital_link=magic"], "baselines.digital_link: Input should be 'bits' or 'abstraction'"),
    (["baselines.digital_target_bler=1"], "baselines.digital_target_bler: Input should be less than 1"),
    (["baselines.digital_max_transmissions=1000000"], "baselines.digital_max_transmissions: Input should be less than"),
    (["baselines.deepsc_vqa_checkpoint=/nonexistent/dvqa"], "baselines.deepsc_vqa_checkpoint: no deepsc_vqa checkpoint at"),
    (["adaptation={mode: fast}"], "adaptation.0.mode: Input should be 'fixed', 'snr' or 'importance'"),
    (["adaptation={mode: fixed, target: 0.9}"], "mode fixed takes no target, budget or repeat"),
    (["adaptation={mode: fixed, repeat: true}"], "mode fixed takes no target, budget or repeat"),
    (["adaptation={mode: snr, budget: 0.5}"], "budget is a setting of mode importance"),
    (["adaptation={mode: importance, target: 1.5}"], "adaptation.0.target: Input should be less than or equal to 1"),
    (["adaptation={mode: importance, budget: 0}"], "adaptation.0.budget: Input should be greater than 0"),
    (["adaptation=[{mode: snr}, {mode: snr}]"], "adaptation settings must be distinct, got snr@0.99, snr@0.99"),
    (["adaptation=[]"], "adaptation: List should have at least 1 item"),
    (["adaptation={mode: importance, rate: 3}"], "adaptation.0.rate: unknown key"),
    (["adaptation=3"], "adaptation: Input should be a valid list"),
    (["adaptation={mode: importance, budget: 0.02}"],
     "adaptation: budget 0.02 x c = 0.64 symbols per token is below the codec's smallest rate 1"),
    (["model.quantize=int4"], "model.quantize: Input should be 'none', 'int8' or 'int8_dynamic'"),
    (["num_users"], "--set expects key=value, got 'num_users'"),
    (["=3"], "--set: bad key ''"),
]


@pytest.mark.parametrize("overrides, fragment", SCENARIO_CASES, ids=lambda value: None)
def test_a_malformed_scenario_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys, overrides, fragment):
    args = ["run", str(SCENARIO)]
    for override in overrides:
        args += ["--set", override]
    _refused(capsys, args + ["--out", str(tmp_path / "out")], fragment, tmp_path / "out")


def test_the_suite_covers_every_section_and_at_least_sixty_cases():
    from simulator.scenario import Scenario

    keys = {override.split("=")[0].split(".")[0] for overrides, _ in SCENARIO_CASES for override in overrides}
    assert set(Scenario.model_fields) - {"name", "description"} <= keys
    assert len(SCENARIO_CASES) >= 60


# ---- property: any mutation of a shipped scenario is refused the same way ----------------------
SHIPPED_SCENARIOS = [SCENARIO, SCENARIO.parent / "multitask.yaml"]


def _leaves(node, path=()):
    """Paths to every scalar of a parsed YAML document (list items included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, path + (index,))
    else:
        yield path, node


def _mappings(node, path=()):
    if isinstance(node, dict):
        yield path
        for key, value in node.items():
            yield from _mappings(value, path + (key,))


def _set(document, path, value):
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


@st.composite
def _mutated_scenario(draw) -> bytes:
    """A shipped scenario with one defect: a wrong type, an out-of-range number, an unknown key,
    a key given twice, or a byte that is not UTF-8."""
    import yaml

    text = draw(st.sampled_from(SHIPPED_SCENARIOS)).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    kind = draw(st.sampled_from(["wrong_type", "out_of_range", "unknown_key", "duplicate_key", "not_utf8"]))
    if kind == "not_utf8":
        at = draw(st.integers(0, len(text)))
        return text[:at].encode() + draw(st.sampled_from([b"\xff", b"\xfe", b"\xc3(", b"\x80"])) + text[at:].encode()
    if kind == "duplicate_key":
        lines = text.splitlines(keepends=True)
        top_level = [line for line in lines if line[:1].isalpha() and ":" in line]
        return (text + draw(st.sampled_from(top_level))).encode()
    if kind == "wrong_type":
        path, _ = draw(st.sampled_from(list(_leaves(document))))
        _set(document, path, {"not": ["a", "scalar"]})
    elif kind == "out_of_range":
        numbers = [(p, v) for p, v in _leaves(document) if isinstance(v, (int, float)) and not isinstance(v, bool)]
        path, _ = draw(st.sampled_from(numbers))
        _set(document, path, draw(st.sampled_from([1e30, -1e30, float("nan")])))
    else:
        path = draw(st.sampled_from(list(_mappings(document))))
        _set(document, path + (draw(st.sampled_from(["zz_unknown", "num_user", "snr"])),), 1)
    return yaml.safe_dump(document, sort_keys=False).encode()


@settings(max_examples=40, deadline=10_000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=_mutated_scenario())
def test_any_mutation_of_a_shipped_scenario_exits_2_in_one_line(tmp_path, capsys, content):
    path = tmp_path / "mutated.yaml"
    path.write_bytes(content)
    out = tmp_path / "out"
    status = main(["run", str(path), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2, (content, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not out.exists()
