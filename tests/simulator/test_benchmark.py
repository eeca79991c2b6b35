"""The benchmark's pipeline pass: every part timed, parts within the total, tasks cycle over users."""

import pytest

from simulator.benchmark import PipelineBench, matmul_flops_per_s


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
