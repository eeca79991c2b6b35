"""The limits of a scenario: ranges of the swept numbers and the largest workload one run may hold
(docs/reproducibility.md, "Limits"). A leaf module: validating a scenario imports nothing heavy."""

from __future__ import annotations

import math

__all__ = ["SNR_RANGE_DB", "TX_POWER_RANGE_DBM", "MAX_SEED", "MAX_USERS", "MAX_TASKS_PER_POINT", "in_range",
           "workload_memory_gb", "check_workload_size"]

#: Ranges of the swept values: beyond them a number is a typo, not a scenario.
SNR_RANGE_DB = (-60.0, 100.0)
TX_POWER_RANGE_DBM = (-50.0, 80.0)
MAX_SEED = 2**32 - 1


def in_range(value: float, what: str, low: float, high: float) -> float:
    """``value`` if finite and in ``[low, high]``; ValueError naming ``what`` otherwise."""
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number")
    if not low <= value <= high:
        raise ValueError(f"{what} must be in [{low:g}, {high:g}], got {value:g}")
    return value


#: Size limits of one run (docs/reproducibility.md, "Limits"). The engine holds a point's tasks, records and
#: per-user channel state in memory, so a larger workload is refused before anything is built or
#: written, with this estimate: memory ~ _BASE_MEMORY_GB + tasks x _MEMORY_PER_TASK_KB. Measured
#: on the 2-core CPU (peak RSS, vqa_8users at one SNR): 1024 users x 48 rounds (49,152 tasks, M4SC
#: sharing off and on) 1.85 GB in 75 s, all four systems 2.42 GB in 12 min; 1024 x 2 (2,048) 0.80 GB.
MAX_USERS = 1024
MAX_TASKS_PER_POINT = 50_000
_BASE_MEMORY_GB = 1.2
_MEMORY_PER_TASK_KB = 25.0


def workload_memory_gb(tasks_per_point: int) -> float:
    """Estimated peak memory of a run serving ``tasks_per_point`` tasks per point, GB."""
    return _BASE_MEMORY_GB + tasks_per_point * _MEMORY_PER_TASK_KB / 1e6


def check_workload_size(num_users: int, tasks_per_point: int, mode: str) -> None:
    """ValueError (one line, with the estimate) when the workload is beyond the documented limits."""
    what = "num_users x traffic.rounds" if mode == "snapshot" else \
        "num_users x traffic.arrival_rate_hz x traffic.duration_s"
    if num_users > MAX_USERS or tasks_per_point > MAX_TASKS_PER_POINT:
        raise ValueError(
            f"workload too large: {num_users:,} users, {what} = {tasks_per_point:,} tasks per point "
            f"(~{workload_memory_gb(tasks_per_point):,.1f} GB estimated); the limits are {MAX_USERS:,} users and "
            f"{MAX_TASKS_PER_POINT:,} tasks per point (docs/reproducibility.md, Limits)")
