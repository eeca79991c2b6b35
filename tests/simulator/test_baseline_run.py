"""The baselines inside ``python -m simulator run``: one row per point for each baseline (sharing
off only), each serving only its task kinds, the digital chains' byte accounting, and clear errors
for a missing baseline checkpoint."""

import json

import pandas as pd
import pytest

from simulator.cli import main


@pytest.fixture(scope="module")
def deepsc_vqa_checkpoint(tmp_path_factory, clevr_dir):
    """A random DeepSC-VQA over the test split's answers and words, saved as a checkpoint."""
    import torch

    from simulator.baselines.deepsc_vqa import DeepSCVQA, DeepSCVQAConfig, save_deepsc_vqa
    from simulator.models.tokenizer import train_word_tokenizer

    questions = json.loads((clevr_dir / "questions" / "CLEVR_test_questions.json").read_text())["questions"]
    tokenizer = train_word_tokenizer([q["question"] for q in questions], vocab_size=256)
    answers = tuple(sorted({str(q["answer"]) for q in questions}))
    torch.manual_seed(0)
    config = DeepSCVQAConfig(vocab_size=len(tokenizer), answers=answers, image_size=64, d_model=16, num_heads=2,
                             ffn_dim=32, dropout=0.0, num_image_layers=1, num_text_layers=1, num_reasoning_layers=1,
                             symbols_per_image_token=2, symbols_per_word=3, channel_hidden=16, max_words=24)
    return save_deepsc_vqa(DeepSCVQA(config, tokenizer).eval(), tmp_path_factory.mktemp("deepsc_vqa"))


def test_baselines_run_beside_m4sc_on_the_same_tasks(write_scenario, deepsc_vqa_checkpoint, clevr_dir, tmp_path, capsys):
    path = write_scenario({
        "systems": ["m4sc", "deepsc_vqa", "digital_source", "digital_answer"],
        "snr_db": [-20.0, 30.0],
        "baselines": {"deepsc_vqa_checkpoint": str(deepsc_vqa_checkpoint)},
    })
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--json"]) == 0
    frame = pd.DataFrame(json.loads(capsys.readouterr().out))
    counts = frame.groupby("system").size().to_dict()
    assert counts == {"m4sc": 6, "deepsc_vqa": 2, "digital_source": 2, "digital_answer": 2}  # m4sc: off, 1.0, 0.9
    baselines = frame[frame["system"] != "m4sc"]
    assert not baselines["sharing"].any() and (baselines["symbols_public"] == 0).all()
    assert frame["num_tasks"].nunique() == 1  # every system served the same 3 users x 2 rounds

    vqa = baselines[baselines["system"] == "deepsc_vqa"]
    # 64 image tokens x 2 symbols + 3 symbols per question word, per task
    assert ((vqa["symbols_private"] - 128 * vqa["num_tasks"]) % 3 == 0).all()
    assert (vqa["bytes_total"] == vqa["symbols_private"] * 2).all()  # 2 reals x 8 bits / 8

    m4sc_noiseless = frame.loc[frame["system"] == "m4sc", "accuracy_noiseless"].iloc[0]
    for name in ("digital_source", "digital_answer"):
        row = frame[(frame["system"] == name) & (frame["snr_db"] == 30.0)].iloc[0]
        assert row["accuracy"] == row["accuracy_noiseless"] == m4sc_noiseless  # error-free, the same MLLM output
        low = frame[(frame["system"] == name) & (frame["snr_db"] == -20.0)].iloc[0]
        assert low["air_time_mean_s"] > row["air_time_mean_s"]  # lowest MCS + ARQ rounds
    source = frame[(frame["system"] == "digital_source") & (frame["snr_db"] == 30.0)].iloc[0]
    answer = frame[(frame["system"] == "digital_answer") & (frame["snr_db"] == 30.0)].iloc[0]
    smallest_png = min(p.stat().st_size for p in (clevr_dir / "images" / "test").iterdir())
    assert source["bytes_total"] >= source["num_tasks"] * smallest_png > answer["bytes_total"] > 0
    assert len(frame[frame["snr_db"] == 30.0]) == 6


def test_a_missing_baseline_checkpoint_is_one_line_exit_2(write_scenario, tmp_path, capsys):
    path = write_scenario({"systems": ["m4sc", "deepsc_vqa"],
                           "baselines": {"deepsc_vqa_checkpoint": str(tmp_path / "nowhere")}})
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "baselines.deepsc_vqa_checkpoint" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_system_without_the_scenarios_task_kinds_is_an_error(write_scenario, tmp_path, capsys):
    path = write_scenario({"systems": ["deepsc"]})  # DeepSC classifies text; the scenario has VQA only
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "deepsc" in capsys.readouterr().err
