"""The event engine and the M4SC system: traffic streams, latency = queueing + air time, queueing
grows with load, and the codec plumbing (sharing, broadcast, recombination) is exact."""

import math

import pytest
import torch

from channels.allocation import ResourceAllocator, SlotGrid
from channels.conventions import snr_db_to_no
from channels.flat import AWGNChannel
from channels.randomness import user_generators
from simulator.engine import EncodingCache, simulate_episode
from simulator.interface import BatchPlan, Delivery, Link, System
from simulator.links import BROADCAST_STREAM, UNICAST_STREAM
from simulator.scenario import SharingVariant, TrafficSection
from simulator.workload import Task, TaskPool, poisson_arrivals, snapshot_rounds

OFF = SharingVariant(threshold=None)


def _pool(size: int = 50) -> TaskPool:
    tasks = [Task(f"vqa/{i}", "vqa", f"question {i}", f"img{i % 7}.png", ("yes",), f"img{i % 7}.png") for i in range(size)]
    return TaskPool({"vqa": tasks})


class CountingSystem(System):
    """A stand-in system: every task is ``tokens`` tokens of ``c`` symbols; identical tasks in a
    batch share when sharing is on; every user decodes the right answer."""

    name = "counting"

    def __init__(self, tokens: int = 4, c: int = 32):
        self.tokens, self.c = tokens, c

    def encode(self, tasks):
        return list(tasks)

    def plan(self, tasks, variant):
        rows = len(tasks)
        ids = [t.task_id for t in tasks]
        shared = [variant.enabled and ids.count(i) > 1 for i in ids]
        groups = {i for i, s in zip(ids, shared) if s}
        size = self.tokens * self.c
        return BatchPlan(
            broadcast_symbols=len(groups) * size,
            broadcast_rows=[r for r in range(rows) if shared[r]],
            unicast_symbols=[0 if s else size for s in shared],
            overhead_bits=[0] * rows,
            public_symbol_share=[size / ids.count(i) if s else 0.0 for i, s in zip(ids, shared)],
            tokens=[self.tokens] * rows,
            public_tokens=[self.tokens if s else 0 for s in shared],
        )

    def deliver(self, tasks, plan, users, link, allocation=None):
        return [Delivery(t.references[0], t.references[0], 1.0, 1.0) for t in tasks]


def _link(num_users: int, snr_db: float = 10.0, seed: int = 0) -> Link:
    snr = torch.full((num_users,), snr_db)
    return Link(AWGNChannel(equalizer="mmse"), snr_db_to_no(snr), snr,
                user_generators(seed, num_users, BROADCAST_STREAM), user_generators(seed, num_users, UNICAST_STREAM))


def _run(arrivals, num_users, grid, system=None, variant=OFF, interval=None):
    system = system or CountingSystem()
    allocator = ResourceAllocator(grid, num_users, mode="analog")
    return simulate_episode(arrivals, system, variant, _link(num_users), allocator, EncodingCache(),
                            interval or grid.slot_duration_s)


# ---- traffic ---------------------------------------------------------------------------------
def test_adding_a_user_changes_no_other_users_tasks_or_arrivals():
    traffic = TrafficSection(mode="poisson", arrival_rate_hz=40, duration_s=0.5, shared_task_probability=0.3)
    pool = _pool()
    few = poisson_arrivals(traffic, pool, 3, seed=5)
    more = poisson_arrivals(traffic, pool, 4, seed=5)
    assert [a for a in more if a.user < 3] == few
    rounds_few = snapshot_rounds(TrafficSection(rounds=3, shared_task_probability=0.3), pool, 3, seed=5)
    rounds_more = snapshot_rounds(TrafficSection(rounds=3, shared_task_probability=0.3), pool, 4, seed=5)
    assert [r[:3] for r in rounds_more] == rounds_few


def test_shared_task_probability_sets_how_often_users_ask_the_group_task():
    pool = _pool()
    always = snapshot_rounds(TrafficSection(rounds=5, shared_task_probability=1.0), pool, 4, seed=1)
    assert all(len({a.task.task_id for a in r}) == 1 and all(a.group == 0 for a in r) for r in always)
    never = snapshot_rounds(TrafficSection(rounds=5, shared_task_probability=0.0), pool, 4, seed=1)
    assert all(a.group is None for r in never for a in r)
    half = snapshot_rounds(TrafficSection(rounds=200, shared_task_probability=0.5), pool, 4, seed=1)
    fraction = sum(a.group is not None for r in half for a in r) / 800
    assert abs(fraction - 0.5) < 0.06


def test_poisson_rate_and_window():
    traffic = TrafficSection(mode="poisson", arrival_rate_hz=100, duration_s=2.0)
    arrivals = poisson_arrivals(traffic, _pool(), 5, seed=0)
    assert all(0 <= a.time_s < 2.0 for a in arrivals)
    assert abs(len(arrivals) / (5 * 2.0) - 100) < 10  # 1000 expected, std ~32
    assert arrivals == sorted(arrivals, key=lambda a: (a.time_s, a.user))


# ---- events ----------------------------------------------------------------------------------
def test_snapshot_latency_is_the_air_time_of_each_user():
    grid = SlotGrid(num_prbs=2)  # 336 symbols per slot: 4 users x 128 symbols need 2 slots
    arrivals = snapshot_rounds(TrafficSection(rounds=1), _pool(), 4, seed=0)[0]
    records = _run(arrivals, 4, grid)
    assert len(records) == 4
    for record in records:
        assert record.queueing_s == 0
        assert record.latency_s == pytest.approx(record.air_time_s)
        assert record.air_time_s >= grid.slot_duration_s
    assert max(r.air_time_s for r in records) == pytest.approx(2 * grid.slot_duration_s)


def test_poisson_latency_covers_air_time_and_queueing_grows_with_load():
    grid = SlotGrid(num_prbs=1)  # 168 symbols per slot: a 128-symbol task fills a slot
    pool = _pool()

    def mean_queueing(rate):
        traffic = TrafficSection(mode="poisson", arrival_rate_hz=rate, duration_s=0.05)
        arrivals = poisson_arrivals(traffic, pool, 4, seed=3)
        records = _run(arrivals, 4, grid)
        assert len(records) == len(arrivals)
        for r in records:
            assert r.latency_s >= r.air_time_s - 1e-12
            assert r.latency_s == pytest.approx(r.queueing_s + r.air_time_s)
            assert r.start_s >= r.arrival_s
        return sum(r.queueing_s for r in records) / len(records), len(records)

    light, n_light = mean_queueing(50)
    heavy, n_heavy = mean_queueing(1500)
    assert n_heavy > n_light
    assert heavy > 3 * light


def test_batches_start_on_the_batch_interval():
    grid = SlotGrid(num_prbs=51)
    traffic = TrafficSection(mode="poisson", arrival_rate_hz=200, duration_s=0.05)
    arrivals = poisson_arrivals(traffic, _pool(), 3, seed=2)
    records = _run(arrivals, 3, grid, interval=0.01)
    assert len(records) == len(arrivals)
    # 51 PRBs carry a batch in well under the interval, so the BS is idle at every boundary. A batch
    # takes one task per user, first come first served: a task starts at the first boundary at or
    # after its arrival that its user's previous task has not taken.
    assert max(r.air_time_s for r in records) < 0.01
    for user in range(3):
        previous = -1
        for r in sorted((r for r in records if r.user == user), key=lambda r: r.arrival_s):
            boundary = max(math.ceil(r.arrival_s / 0.01 - 1e-9), previous + 1)
            assert r.start_s == pytest.approx(boundary * 0.01, abs=1e-9)
            previous = boundary


def test_sharing_identical_tasks_sends_the_broadcast_once():
    grid = SlotGrid()
    arrivals = snapshot_rounds(TrafficSection(rounds=1, shared_task_probability=1.0), _pool(), 4, seed=0)[0]
    on = _run(arrivals, 4, grid, variant=SharingVariant(threshold=0.9))
    off = _run(arrivals, 4, grid)
    assert sum(r.symbols_public for r in on) == 4 * 32
    assert sum(r.symbols_private for r in on) == 0
    assert sum(r.symbols_private for r in off) == 4 * 4 * 32
    assert all(r.same_scene for r in on)


def test_encodings_are_cached_across_points_and_variants():
    class Counting(CountingSystem):
        calls = 0

        def encode(self, tasks):
            Counting.calls += 1
            return list(tasks)

    system, cache, grid = Counting(), EncodingCache(), SlotGrid()
    arrivals = snapshot_rounds(TrafficSection(rounds=1), _pool(), 3, seed=0)[0]
    for variant in (OFF, SharingVariant(threshold=0.9)):
        for snr in (0.0, 20.0):
            link = Link(AWGNChannel(), snr_db_to_no(torch.full((3,), snr)), torch.full((3,), snr),
                        user_generators(0, 3, 1), user_generators(0, 3, 2))
            simulate_episode(arrivals, system, variant, link, ResourceAllocator(grid, 3, mode="analog"), cache,
                             grid.slot_duration_s)
    assert Counting.calls == 1


# ---- the M4SC system with a tiny codec -------------------------------------------------------
@pytest.fixture(scope="module")
def m4sc(tiny_checkpoint, clevr_dir):
    from simulator.models.checkpoint import load_codec
    from simulator.systems import M4SCSystem

    codec = load_codec(tiny_checkpoint)
    pool = TaskPool.from_sources(["vqa"], clevr_dir, "test", None, "sentences", "test", 64)
    return M4SCSystem(codec, pool.load_image, codec.config.max_new_tokens), pool


def test_identity_codec_at_very_high_snr_recovers_every_token(m4sc):
    system, pool = m4sc
    tasks = pool.tasks["vqa"][:3]
    encoded = system.encode(tasks)
    for variant in (OFF, SharingVariant(threshold=0.5)):
        plan = system.plan(encoded, variant)
        deliveries = system.deliver(encoded, plan, [0, 1, 2], _link(3, snr_db=200.0))
        assert [d.token_accuracy for d in deliveries] == [1.0, 1.0, 1.0]
        assert [d.prediction for d in deliveries] == encoded.reference_texts


def test_identical_tasks_share_all_tokens_and_threshold_one_shares_none(m4sc):
    system, pool = m4sc
    task = pool.tasks["vqa"][0]
    encoded = system.encode([task, task, task, pool.tasks["vqa"][5]])
    tokens = encoded.transmission.token_mask.sum(-1).tolist()
    c = system.symbols_per_token
    shared = system.plan(encoded, SharingVariant(threshold=0.99, stat_tolerance=0.1))
    assert shared.public_tokens[:3] == tokens[:3]
    assert shared.unicast_symbols[:3] == [0, 0, 0]
    # the random tiny model may repeat one token (one public vector then serves every position)
    assert c <= shared.broadcast_symbols <= tokens[0] * c
    assert sum(shared.public_symbol_share) == pytest.approx(shared.broadcast_symbols)
    none = system.plan(encoded, SharingVariant(threshold=1.0))
    off = system.plan(encoded, OFF)
    for plan in (none, off):
        assert plan.broadcast_symbols == 0 and plan.public_tokens == [0] * 4
        assert plan.unicast_symbols == [n * c for n in tokens]
    assert shared.broadcast_symbols + sum(shared.unicast_symbols) < sum(off.unicast_symbols)
    low = [system.deliver(encoded, p, [0, 1, 2, 3], _link(4, snr_db=-5.0, seed=9)) for p in (none, off)]
    assert low[0] == low[1]


def test_broadcast_reception_is_per_user(m4sc):
    system, pool = m4sc
    task = pool.tasks["vqa"][1]
    encoded = system.encode([task, task])
    plan = system.plan(encoded, SharingVariant(threshold=0.99))
    assert plan.broadcast_rows == [0, 1]
    deliveries = system.deliver(encoded, plan, [0, 1], _link(2, snr_db=200.0))
    assert all(d.token_accuracy == 1.0 for d in deliveries)
    assert not math.isnan(deliveries[0].sequence_recovered)
    # Both users receive only the same broadcast: with one shared noise draw they would always decode
    # alike; each user's own noise makes them differ at a low SNR.
    assert plan.unicast_symbols == [0, 0]
    noisy = [system.deliver(encoded, plan, [0, 1], _link(2, snr_db=-5.0, seed=seed)) for seed in range(6)]
    assert any(a.token_accuracy != b.token_accuracy or a.prediction != b.prediction for a, b in noisy)
