"""results.summarize: one row per task kind, every count and byte computed from the records by hand."""

import math

import pytest

from simulator.engine import PointResult, TaskRecord
from simulator.results import COLUMNS, summarize
from simulator.scenario import AdaptationSetting, Scenario, SharingVariant, SweepPoint
from simulator.interface import Delivery
from simulator.workload import Task

SCENARIO = Scenario.model_validate({"name": "t", "systems": ["m4sc"], "num_users": 3, "snr_db": [5.0]})


def _record(user, kind, answer, prediction, *, public=0.0, private=64, overhead=0, tokens=2, public_tokens=0,
            token_symbols=None, start=0.0, air=0.001, same_scene=False):
    task = Task(f"{kind}-{user}", kind, "q", None, (answer,), f"scene-{user}")
    delivery = Delivery(prediction, answer, token_accuracy=1.0 if prediction == answer else 0.5,
                        sequence_recovered=1.0 if prediction == answer else 0.0)
    return TaskRecord(user=user, task=task, group=None, arrival_s=0.0, start_s=start, air_time_s=air,
                      delivery=delivery, symbols_public=public, symbols_private=private, overhead_bits=overhead,
                      tokens=tokens, public_tokens=public_tokens, same_scene=same_scene, snr_db=5.0,
                      token_symbols=token_symbols, delivered_s=start + air)


def test_rows_per_kind_with_bytes_shares_and_rates_counted_by_hand():
    records = [
        _record(0, "vqa", "yes", "yes", public=10.5, private=32, overhead=12, tokens=2, public_tokens=1,
                token_symbols=40, same_scene=True),
        _record(1, "vqa", "2", "3", public=10.5, private=8, overhead=4, tokens=2, public_tokens=1, token_symbols=29,
                start=0.01, air=0.002, same_scene=True),
        _record(2, "classify", "positive", "positive", private=64, tokens=2, token_symbols=64),
    ]
    result = PointResult(SweepPoint(index=0, snr_db=5.0), "m4sc", SharingVariant(threshold=0.9), records,
                         [5.0, 5.0, 7.0], AdaptationSetting(mode="importance", target=0.95))
    rows = summarize(result, SCENARIO, "awgn", symbols_per_token=32)
    assert [r["task"] for r in rows] == ["vqa", "classify"]
    assert all(list(r) == COLUMNS for r in rows)
    vqa, classify = rows
    assert vqa["num_tasks"] == 2 and vqa["accuracy"] == 0.5 and vqa["accuracy_noiseless"] == 1.0
    assert vqa["token_accuracy"] == 0.75 and vqa["sequence_accuracy"] == 0.5
    assert (vqa["tokens_total"], vqa["tokens_public"], vqa["sharing_ratio"]) == (4, 2, 0.5)
    assert (vqa["symbols_public"], vqa["symbols_private"], vqa["overhead_bits"]) == (21.0, 40, 16)
    assert vqa["symbols_no_sharing"] == 4 * 32  # sharing on: every token unicast at c
    assert vqa["symbols_per_token_mean"] == (40 + 29) / 4
    assert vqa["bytes_total"] == pytest.approx((21.0 + 40) * 2 * 8 / 8 + 16 / 8)
    assert vqa["bytes_per_task"] == pytest.approx(vqa["bytes_total"] / 2)
    assert vqa["same_scene_fraction"] == 1.0 and classify["same_scene_fraction"] == 0.0
    assert (vqa["sharing"], vqa["threshold"], vqa["adaptation"]) == (True, 0.9, "importance@0.95")
    assert vqa["latency_mean_s"] == pytest.approx((0.001 + 0.012) / 2)
    assert vqa["queueing_mean_s"] == pytest.approx(0.005) and vqa["latency_max_s"] == pytest.approx(0.012)
    assert (vqa["snr_db"], vqa["snr_db_user_min"], vqa["snr_db_user_max"]) == (5.0, 5.0, 7.0)
    assert classify["accuracy"] == 1.0 and classify["bytes_total"] == 64 * 2
    assert math.isnan(vqa["bleu4"]) and math.isnan(vqa["tx_power_dbm"])
    # Channel uses: the symbols plus the side information at 0.49 bit per symbol; one of two answers right.
    assert vqa["channel_uses"] == pytest.approx(21.0 + 40 + 16 / 0.490234375)
    assert vqa["channel_uses_per_task"] == pytest.approx(vqa["channel_uses"] / 2)
    assert vqa["channel_uses_per_correct"] == pytest.approx(vqa["channel_uses"] / 1)
    assert classify["channel_uses"] == 64 and classify["channel_uses_per_correct"] == 64


def test_digital_rows_count_information_bytes_and_without_sharing_all_is_unicast():
    records = [_record(u, "vqa", "yes", "yes", private=100 + u, overhead=8) for u in range(2)]
    for r, bits in zip(records, (800, 1200)):
        r.payload_bits = bits
    result = PointResult(SweepPoint(index=0, snr_db=5.0), "digital_answer", SharingVariant(threshold=None), records,
                         [5.0, 5.0, 5.0])
    (row,) = summarize(result, SCENARIO, "awgn", symbols_per_token=32)
    assert row["bytes_total"] == (800 + 1200) / 8  # the information bytes, not the symbols
    assert row["symbols_no_sharing"] == 201  # sharing off: what was sent
    assert math.isnan(row["symbols_per_token_mean"]) and row["adaptation"] == "fixed"
    assert (row["sharing"], math.isnan(row["threshold"])) == (False, True)
    assert row["channel_uses"] == pytest.approx(201 + 16 / 0.490234375)  # coded symbols (ARQ included) + side info


def test_no_correct_answer_leaves_channel_uses_per_correct_undefined():
    records = [_record(u, "vqa", "yes", "no") for u in range(2)]
    result = PointResult(SweepPoint(index=0, snr_db=5.0), "m4sc", SharingVariant(threshold=None), records, [5.0] * 3)
    (row,) = summarize(result, SCENARIO, "awgn", symbols_per_token=32)
    assert row["channel_uses"] == 128 and math.isnan(row["channel_uses_per_correct"])


def test_side_information_is_counted_at_the_lowest_mcs_of_the_digital_chain():
    from channels.link_adaptation import mcs_table
    from simulator.results import SIDE_INFO_BITS_PER_SYMBOL

    assert SIDE_INFO_BITS_PER_SYMBOL == min(m.spectral_efficiency for m in mcs_table(1))


def test_answer_entropy_is_that_of_the_split_and_reaches_the_rows():
    from simulator.workload import TaskPool

    answers = ["yes", "no", "2", "3"] * 5 + ["yes"] * 4  # p(yes) = 9/24, the others 5/24
    pool = TaskPool({"vqa": [Task(f"vqa/{i}", "vqa", "q", None, (a,), "s") for i, a in enumerate(answers)],
                     "caption": [Task("caption/0", "caption", None, None, ("a b", "c d"), "s")]})
    expected = -(9 / 24 * math.log2(9 / 24) + 3 * 5 / 24 * math.log2(5 / 24))
    assert pool.answer_entropy_bits("vqa") == pytest.approx(expected)
    assert math.isnan(pool.answer_entropy_bits("caption"))
    result = PointResult(SweepPoint(index=0, snr_db=5.0), "m4sc", SharingVariant(threshold=None),
                         [_record(0, "vqa", "yes", "yes")], [5.0] * 3)
    (row,) = summarize(result, SCENARIO, "awgn", 32, {"vqa": pool.answer_entropy_bits("vqa")})
    assert row["answer_entropy_bits"] == pytest.approx(expected)
    (row,) = summarize(result, SCENARIO, "awgn", 32)
    assert math.isnan(row["answer_entropy_bits"])


def test_the_fano_bounds_statistics_condition_on_the_question_and_reach_the_rows():
    from simulator.workload import TaskPool

    # "is it red?" 4x: yes, yes, no, no (1 bit); "how many?" 2x: 2, 3 (1 bit); "what shape?" 2x: cube (0 bit)
    tasks = [("is it red?", "yes"), ("is it red?", "yes"), ("is it red?", "no"), ("is it red?", "no"),
             ("how many?", "2"), ("how many?", "3"), ("what shape?", "cube"), ("what shape?", "cube")]
    pool = TaskPool({"vqa": [Task(f"vqa/{i}", "vqa", q, None, (a,), "s") for i, (q, a) in enumerate(tasks)],
                     "caption": [Task("caption/0", "caption", None, None, ("a b",), "s")]})
    stats = pool.answer_statistics("vqa")
    assert stats["answer_cond_entropy_bits"] == pytest.approx(4 / 8 * 1.0 + 2 / 8 * 1.0 + 2 / 8 * 0.0)
    assert stats["num_answers"] == 5 and stats["answer_cond_entropy_bits"] < pool.answer_entropy_bits("vqa")
    assert math.isnan(pool.answer_statistics("caption")["num_answers"])
    result = PointResult(SweepPoint(index=0, snr_db=5.0), "m4sc", SharingVariant(threshold=None),
                         [_record(0, "vqa", "yes", "yes")], [5.0] * 3)
    (row,) = summarize(result, SCENARIO, "awgn", 32, None, {"vqa": stats})
    assert row["answer_cond_entropy_bits"] == pytest.approx(0.75) and row["num_answers"] == 5
