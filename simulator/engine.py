"""The discrete-event engine: the SimPy processes of the BS and the users, and the sweep over points.

Events (SimPy; processes are generator functions taking ``env`` first):

- :func:`user_traffic`: one per user, submits the user's tasks (:mod:`simulator.workload`) to the
  BS at their arrival times;
- :meth:`BaseStation.serve`: waits for pending tasks, starts a batch at the next slot (or
  ``batch_interval_s``) boundary with the head task of every user's FIFO queue, runs the system's
  encoder and comparator (cached: both are SNR-independent), asks the
  :class:`channels.allocation.ResourceAllocator` for PRBs (broadcast payload = public symbols,
  unicast payload = each user's private symbols), transmits, and stays busy for the allocation's
  air time;
- :func:`user_reception`: one per task in flight; the user decodes when its last stream (own
  unicast and, if needed, the broadcast) has been delivered, and records the latency
  ``delivered - arrival = queueing + air time``.

Randomness: the workload's own (:mod:`simulator.workload`); the physical layer from per-user torch
generators (:func:`channels.randomness.user_generators`, stream ids
:data:`simulator.links.UNICAST_STREAM` and :data:`~simulator.links.BROADCAST_STREAM`), recreated
for every sweep point, system and sharing variant, so variants and points see common random
numbers. The engine is deterministic for a seed.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from simulator.interface import BatchPlan, Delivery, Link, System
from simulator.links import BROADCAST_STREAM, REPEAT_STREAM, UNICAST_STREAM
from simulator.scenario import AdaptationSetting, Scenario, SharingVariant, SweepPoint
from simulator.workload import Arrival, Task, TaskPool, poisson_arrivals, snapshot_rounds

__all__ = ["TaskRecord", "PointResult", "user_traffic", "user_reception", "BaseStation", "simulate_episode",
           "EncodingCache", "SweepRunner"]

_BOUNDARY_TOLERANCE = 1e-9


# ---- records -----------------------------------------------------------------------------------
@dataclass
class TaskRecord:
    """One served task.

    Times in seconds; symbols are complex channel uses; ``symbols_public`` is this task's share of
    the broadcast (the broadcast counts once over all tasks of a batch). ``payload_bits``: the
    information bits of a digital system's transmission (None for analog systems).
    ``token_symbols``: symbols per token summed over the task's tokens (None if not token based).
    """

    user: int
    task: Task
    group: int | None
    arrival_s: float
    start_s: float
    air_time_s: float
    delivery: Delivery
    symbols_public: float
    symbols_private: int
    overhead_bits: int
    tokens: int
    public_tokens: int
    same_scene: bool
    snr_db: float
    payload_bits: int | None = None
    token_symbols: int | None = None
    delivered_s: float = math.nan

    @property
    def queueing_s(self) -> float:
        return self.start_s - self.arrival_s

    @property
    def latency_s(self) -> float:
        return self.delivered_s - self.arrival_s


@dataclass
class PointResult:
    """All tasks served at one sweep point by one system under one sharing variant and one rate
    adaptation setting.

    ``snr_db_users`` is ``[U]`` (dB), the users' SNRs at this point.
    """

    point: SweepPoint
    system: str
    variant: SharingVariant
    records: list[TaskRecord]
    snr_db_users: list[float]
    adaptation: AdaptationSetting = field(default_factory=AdaptationSetting)


# ---- caching -----------------------------------------------------------------------------------
class EncodingCache:
    """SNR-independent work per batch: the system's encoding and its plan per sharing variant.

    Keys are the batch's task ids in row order (the BS output depends on nothing else). At most
    ``max_entries`` encodings are kept (least recently used dropped first).
    """

    def __init__(self, max_entries: int = 4096):
        self.max_entries = max_entries
        self._encoded: OrderedDict = OrderedDict()
        self._plans: dict = {}
        self.encode_calls = 0

    def get(self, system: System, tasks: list[Task], variant: SharingVariant):
        key = (system.name, tuple(t.task_id for t in tasks))
        if key in self._encoded:
            self._encoded.move_to_end(key)
        else:
            self._encoded[key] = system.encode(tasks)
            self.encode_calls += 1
            if len(self._encoded) > self.max_entries:
                old, _ = self._encoded.popitem(last=False)
                self._plans = {k: v for k, v in self._plans.items() if k[0] != old}
        plan_key = (key, variant)
        if plan_key not in self._plans:
            self._plans[plan_key] = system.plan(self._encoded[key], variant)
        return self._encoded[key], self._plans[plan_key]


# ---- SimPy processes ---------------------------------------------------------------------------
def user_traffic(env, arrivals: list[Arrival], base_station: "BaseStation"):
    """A user's task arrivals (sorted by time) handed to the BS when they occur."""
    for arrival in arrivals:
        if arrival.time_s > env.now:
            yield env.timeout(arrival.time_s - env.now)
        base_station.submit(arrival)


def user_reception(env, record: TaskRecord, sink: list[TaskRecord]):
    """The user decodes once its streams have arrived; the record gets its delivery time."""
    yield env.timeout(record.air_time_s)
    record.delivered_s = env.now
    sink.append(record)


class BaseStation:
    """The BS: per-user FIFO queues, one batch at a time on the slot grid.

    Args:
        env: the SimPy environment.
        system: the communication system.
        variant: sharing setting.
        link: the physical layer (all users).
        allocator: :class:`channels.allocation.ResourceAllocator` of the scenario's users.
        cache: :class:`EncodingCache`.
        batch_interval_s: batches start only at multiples of this (the slot duration by default).
        expected_tasks: tasks to serve before the process ends.
        on_batch: called with the number of tasks of each batch served (progress).
        adaptation: the rate-adaptation setting (``fixed`` by default).
    """

    def __init__(self, env, system: System, variant: SharingVariant, link: Link, allocator, cache: EncodingCache,
                 batch_interval_s: float, expected_tasks: int, on_batch: Callable[[int], None] | None = None,
                 adaptation: AdaptationSetting | None = None):
        self.env = env
        self.system, self.variant, self.link = system, variant, link
        self.adaptation = adaptation or AdaptationSetting()
        self.allocator, self.cache = allocator, cache
        self.batch_interval_s = batch_interval_s
        self.expected_tasks = expected_tasks
        self.on_batch = on_batch
        self.queues: list[deque[Arrival]] = [deque() for _ in range(link.num_users)]
        self.records: list[TaskRecord] = []
        self.served = 0
        self._wake = None

    def submit(self, arrival: Arrival) -> None:
        self.queues[arrival.user].append(arrival)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def _next_boundary(self) -> float:
        slots = math.ceil(self.env.now / self.batch_interval_s - _BOUNDARY_TOLERANCE)
        return max(self.env.now, slots * self.batch_interval_s)

    def serve(self, env):
        """The BS process."""
        while self.served < self.expected_tasks:
            if not any(self.queues):
                self._wake = env.event()
                yield self._wake
                self._wake = None
            start = self._next_boundary()
            if start > env.now:
                yield env.timeout(start - env.now)
            batch = [queue.popleft() for queue in self.queues if queue]
            air_time = self._transmit(env, batch)
            self.served += len(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch))
            if air_time > 0:
                yield env.timeout(air_time)

    def _transmit(self, env, batch: list[Arrival]) -> float:
        """Encode, allocate, transmit and schedule the users' receptions; returns the air time (s)."""
        tasks = [a.task for a in batch]
        users = [a.user for a in batch]
        encoded, plan = self.cache.get(self.system, tasks, self.variant)
        if self.adaptation.mode != "fixed":
            plan = self.system.adapt(encoded, plan, self.link.snr_db[users], self.adaptation)
        digital = plan.payload_bits is not None
        payload = plan.payload_bits if digital else plan.unicast_symbols
        unicast = [0] * self.link.num_users
        for row, user in enumerate(users):
            unicast[user] = int(payload[row])
        listeners = [users[r] for r in plan.broadcast_rows]
        allocation = self.allocator.allocate(self.link.snr_db, broadcast_payload=int(plan.broadcast_symbols),
                                             broadcast_users=listeners or None, unicast_payloads=unicast)
        deliveries = self.system.deliver(encoded, plan, users, self.link, allocation)
        slot = allocation.grid.slot_duration_s
        broadcast_slots = allocation.broadcast.num_slots if allocation.broadcast is not None else 0
        scenes = [t.scene for t in tasks]
        for row, arrival in enumerate(batch):
            stream = allocation.unicast[arrival.user]
            slots = stream.num_slots
            if row in plan.broadcast_rows:
                slots = max(slots, broadcast_slots)
            air_time = slots * slot + deliveries[row].retransmission_time_s
            record = _record(arrival, env.now, air_time, deliveries[row], plan, row,
                             scenes.count(arrival.task.scene) > 1, float(self.link.snr_db[arrival.user]),
                             stream.num_symbols_needed if digital else None)
            env.process(user_reception(env, record, self.records))
        return allocation.air_time_s + max((d.retransmission_time_s for d in deliveries), default=0.0)


def _record(arrival: Arrival, start_s: float, air_time_s: float, delivery: Delivery, plan: BatchPlan, row: int,
            same_scene: bool, snr_db: float, coded_symbols: int | None = None) -> TaskRecord:
    """``coded_symbols``: digital systems' channel uses (set by the MCS), else None."""
    digital = plan.payload_bits is not None
    return TaskRecord(
        user=arrival.user, task=arrival.task, group=arrival.group, arrival_s=arrival.time_s, start_s=start_s,
        air_time_s=air_time_s, delivery=delivery, symbols_public=float(plan.public_symbol_share[row]),
        symbols_private=int(coded_symbols + delivery.retransmitted_symbols if digital else plan.unicast_symbols[row]),
        overhead_bits=int(plan.overhead_bits[row]), tokens=int(plan.tokens[row]),
        public_tokens=int(plan.public_tokens[row]), same_scene=same_scene, snr_db=snr_db,
        payload_bits=int(plan.payload_bits[row]) if digital else None,
        token_symbols=int(plan.token_symbols[row]) if plan.token_symbols is not None else None,
    )


def simulate_episode(arrivals: list[Arrival], system: System, variant: SharingVariant, link: Link, allocator,
                     cache: EncodingCache, batch_interval_s: float,
                     on_batch: Callable[[int], None] | None = None,
                     adaptation: AdaptationSetting | None = None) -> list[TaskRecord]:
    """Run one SimPy episode from t = 0 until every arrival is delivered; records in delivery order."""
    import simpy

    env = simpy.Environment()
    base_station = BaseStation(env, system, variant, link, allocator, cache, batch_interval_s, len(arrivals), on_batch,
                               adaptation)
    for user in range(link.num_users):
        own = [a for a in arrivals if a.user == user]
        if own:
            env.process(user_traffic(env, own, base_station))
    env.process(base_station.serve(env))
    env.run()
    if len(base_station.records) != len(arrivals):
        raise RuntimeError(f"episode ended with {len(base_station.records)} of {len(arrivals)} tasks delivered")
    return base_station.records


# ---- the sweep ---------------------------------------------------------------------------------
@dataclass
class SweepRunner:
    """Runs a scenario point by point: every system under every sharing variant at each point.

    Attributes:
        scenario: the validated scenario.
        systems: name -> built system.
        pool: the task pool.
        channel: the channel block.
        drop: the UMi/UMa drop (placement ``drop``) or None.
        grid: :class:`channels.allocation.SlotGrid`.
    """

    scenario: Scenario
    systems: dict[str, System]
    pool: TaskPool
    channel: torch.nn.Module
    drop: object | None
    grid: object
    cache: EncodingCache = field(default_factory=EncodingCache)

    def __post_init__(self):
        traffic = self.scenario.traffic
        users, seed = self.scenario.num_users, self.scenario.seed
        if traffic.mode == "snapshot":
            self.episodes = snapshot_rounds(traffic, self.pool, users, seed)
        else:
            self.episodes = [poisson_arrivals(traffic, self.pool, users, seed)]
        self.batch_interval_s = traffic.batch_interval_s or self.grid.slot_duration_s

    @property
    def tasks_per_run(self) -> int:
        """Tasks served per (point, system, variant)."""
        return sum(len(e) for e in self.episodes)

    def work_units(self) -> int:
        """Tasks served over the whole sweep (for a progress bar)."""
        points = len(self.scenario.sweep_points())
        return points * sum(sum(len(e) for e in self.episodes_for(system)) * len(self.variants_for(system))
                            * len(self.adaptations_for(system)) for system in self.systems.values())

    def episodes_for(self, system: System) -> list[list[Arrival]]:
        """The workload restricted to the task kinds ``system`` serves (arrival times unchanged)."""
        return [[a for a in episode if a.task.kind in system.tasks] for episode in self.episodes]

    def variants_for(self, system: System) -> list[SharingVariant]:
        """The scenario's sharing variants, or only "off" for a system that does not share."""
        if system.shares_semantics:
            return self.scenario.sharing_variants()
        return [SharingVariant(threshold=None, stat_tolerance=self.scenario.sharing.stat_tolerance)]

    def adaptations_for(self, system: System) -> list[AdaptationSetting]:
        """The scenario's rate-adaptation settings, or only ``fixed`` for a system without rates."""
        return list(self.scenario.adaptation) if system.adapts_rate else [AdaptationSetting()]

    def user_snr_db(self, point: SweepPoint) -> torch.Tensor:
        """``[U]`` float32, every user's SNR in dB at ``point``."""
        placement = self.scenario.placement
        if placement.mode == "drop":
            bandwidth = placement.bandwidth_hz or self.grid.bandwidth_hz
            return self.drop.snr_db(point.tx_power_dbm, placement.noise_figure_db, bandwidth).float()
        return torch.full((self.scenario.num_users,), float(point.snr_db))

    def link(self, snr_db: torch.Tensor) -> Link:
        """Fresh per-user streams (common random numbers across points and variants)."""
        from channels.conventions import snr_db_to_no
        from channels.randomness import user_generators

        users, seed = self.scenario.num_users, self.scenario.seed
        return Link(self.channel, snr_db_to_no(snr_db), snr_db,
                    broadcast_streams=user_generators(seed, users, BROADCAST_STREAM),
                    unicast_streams=user_generators(seed, users, UNICAST_STREAM),
                    repeat_streams=user_generators(seed, users, REPEAT_STREAM))

    def allocator(self, system: System):
        from channels.allocation import ResourceAllocator

        resources = self.scenario.resources
        mode = "analog" if system.payload_unit == "symbols" else "digital"
        # target_bler: the digital MCS choice (unused in analog mode)
        return ResourceAllocator(self.grid, self.scenario.num_users, mode=mode,
                                 broadcast_share=resources.broadcast_share, pf_beta=resources.pf_beta,
                                 target_bler=self.scenario.baselines.digital_target_bler)

    def tasks(self) -> list[Task]:
        """Every task of the workload, in arrival order (repeats included)."""
        return [a.task for episode in self.episodes for a in episode]

    def prepare(self, on_progress: Callable[[int], None] | None = None) -> None:
        """Let every system precompute its SNR-independent per-task work (the MLLM generation)."""
        for system in self.systems.values():
            system.prepare([t for t in self.tasks() if t.kind in system.tasks], on_progress)

    def distinct_tasks(self) -> int:
        return len({t.task_id for t in self.tasks()})

    def generation_units(self) -> int:
        """Distinct tasks :meth:`prepare` generates with the MLLM (shared by M4SC and the digital chains)."""
        kinds = {k for s in self.systems.values() if s.uses_mllm for k in s.tasks}
        return len({t.task_id for t in self.tasks() if t.kind in kinds})

    def run_point(self, point: SweepPoint, on_batch: Callable[[int], None] | None = None) -> list[PointResult]:
        """Every system x sharing variant x adaptation setting at ``point``."""
        snr_db = self.user_snr_db(point)
        results = []
        for name, system in self.systems.items():
            allocator = self.allocator(system)
            episodes = [e for e in self.episodes_for(system) if e]
            if not episodes:
                continue
            for variant in self.variants_for(system):
                for setting in self.adaptations_for(system):
                    link = self.link(snr_db)
                    records: list[TaskRecord] = []
                    for arrivals in episodes:
                        allocator.reset()
                        records += simulate_episode(arrivals, system, variant, link, allocator, self.cache,
                                                    self.batch_interval_s, on_batch, setting)
                    results.append(PointResult(point, name, variant, records, [float(s) for s in snr_db], setting))
        return results

    def run(self, on_batch: Callable[[int], None] | None = None) -> Iterator[list[PointResult]]:
        """The sweep, one point at a time (call :meth:`prepare` first to generate ahead; otherwise
        generation happens while the first point runs)."""
        for point in self.scenario.sweep_points():
            yield self.run_point(point, on_batch)
