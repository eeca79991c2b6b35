"""The benchmark's pipeline pass: every part timed, parts within the total, tasks cycle over users."""

import json

import pytest
import torch

from simulator.benchmark import PipelineBench, TransmitterBench, copy_bytes_per_s, matmul_flops_per_s


@pytest.fixture(scope="module")
def bench():
    return PipelineBench(num_tasks=4)


def test_pipeline_pass_times_every_part(bench):
    result = bench.run(6)  # more users than tasks: tasks repeat, so the comparator has work
    parts = ["transmitter_s", "comparator_s", "channel_s", "receiver_s", "bookkeeping_s"]
    assert all(result[p] >= 0 for p in parts)
    assert sum(result[p] for p in parts) <= result["total_s"] + 1e-6
    assert 0.0 <= result["accuracy"] <= 1.0


def test_flop_count_grows_with_users(bench):
    assert bench.forward_flops(4) > bench.forward_flops(1) > 0


def test_matmul_throughput_is_positive():
    assert matmul_flops_per_s(size=128, repeats=2) > 0


def test_transmitter_pass_decodes_exactly_the_requested_tokens():
    bench = TransmitterBench("tiny", max_new_tokens=5)
    row = bench.run(3, repeats=1)
    assert row["new_tokens"] == 5 and row["batch_size"] == 3
    assert row["tokens_per_s"] == pytest.approx(3 * 5 / row["seconds"])
    sent = bench.transmitter([bench.prompt] * 2, torch.zeros(2, 3, bench.image_size, bench.image_size),
                             max_new_tokens=5, stop_at_eos=False)
    assert sent.tokens.shape == (2, 5) and bool(sent.token_mask.all())
    # FLOPs grow with the batch (same prompt, same number of steps)
    assert bench.run(6, repeats=1)["flops"] == pytest.approx(2 * row["flops"], rel=0.01)


def test_weight_bytes_count_every_parameter_once():
    bench = TransmitterBench("tiny", max_new_tokens=2)
    assert bench.parameter_bytes() == 4 * sum(p.numel() for p in bench.model.parameters())


def test_copy_bandwidth_is_positive():
    assert copy_bytes_per_s(num_bytes=1 << 22, repeats=2) > 0


def test_bench_transmitter_json_has_units_and_bounds(run_cli):
    result = run_cli("bench", "--transmitter", "--profile", "tiny", "--device", "cpu", "--batch-sizes", "1,2",
                     "--quick", "--json")
    assert result.returncode == 0, result.stderr
    section = json.loads(result.stdout)["transmitter"]
    assert set(section["batches"]) == {"1", "2"} and section["dtype"] == "float32" and section["units"]
    for row in section["batches"].values():
        assert 0 < row["flop_bound_fraction"] < 1 and 0 < row["weight_stream_bound_fraction"] < 1
