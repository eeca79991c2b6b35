"""The communication systems the simulator compares, behind one interface
(:mod:`simulator.interface`), and their registry.

- :mod:`simulator.systems.m4sc`: ``m4sc``, the paper's MLLM semantic codec with semantic sharing;
- :mod:`simulator.systems.semantic`: ``deepsc`` and ``deepsc_vqa``, the semantic baselines;
- :mod:`simulator.systems.digital`: ``digital_source`` and ``digital_answer``, the 5G LDPC + QAM chains.

Every one is built from a :class:`~simulator.interface.SystemContext` by :func:`build_system`.
The names equal :data:`simulator.scenario.SYSTEM_NAMES` (tested), which validates scenarios
without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable

from simulator.interface import System, SystemContext
from simulator.systems.digital import DigitalAnswerSystem, DigitalSourceSystem
from simulator.systems.m4sc import M4SCSystem
from simulator.systems.semantic import DeepSCSystem, DeepSCVQASystem

__all__ = ["SYSTEMS", "build_system", "M4SCSystem", "DeepSCSystem", "DeepSCVQASystem", "DigitalSourceSystem",
           "DigitalAnswerSystem"]

#: ``system:`` name -> builder ``(SystemContext) -> System``.
SYSTEMS: dict[str, Callable[[SystemContext], System]] = {
    system.name: system.build
    for system in (M4SCSystem, DeepSCSystem, DeepSCVQASystem, DigitalSourceSystem, DigitalAnswerSystem)
}


def build_system(name: str, context: SystemContext) -> System:
    """The system registered as ``name``; ValueError listing the known ones otherwise."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; known: {', '.join(SYSTEMS)}")
    return SYSTEMS[name](context)
