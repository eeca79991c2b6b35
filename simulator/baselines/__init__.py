"""Baseline semantic communication systems the M4SC paper compares against (its Fig. 5 / 6):
DeepSC (text; Xie et al., IEEE TSP 2021) and DeepSC-VQA (image user + text user; Xie et al.,
IEEE JSAC 2022). See ``simulator/baselines/README.md``.

Training and evaluation live in :mod:`simulator.baselines.train` (imported on demand).
"""

from simulator.baselines.blocks import SemanticTransmission, pass_through_channel
from simulator.baselines.deepsc import DeepSC, DeepSCConfig, load_deepsc, save_deepsc
from simulator.baselines.deepsc_vqa import (
    DeepSCVQA,
    DeepSCVQAConfig,
    VQATransmission,
    load_deepsc_vqa,
    save_deepsc_vqa,
)
from simulator.baselines.folders import BaselineCheckpointError

__all__ = [
    "BaselineCheckpointError",
    "DeepSC",
    "DeepSCConfig",
    "DeepSCVQA",
    "DeepSCVQAConfig",
    "SemanticTransmission",
    "VQATransmission",
    "load_deepsc",
    "load_deepsc_vqa",
    "pass_through_channel",
    "save_deepsc",
    "save_deepsc_vqa",
]
