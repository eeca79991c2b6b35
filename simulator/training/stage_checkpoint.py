"""An unfinished stage's checkpoint: the codec (``save_codec``) plus ``trainer_state.pt`` (the step,
the optimizer's state and the stage's training-only parts), written atomically, read for an exact
resume."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from simulator.errors import UserError
from simulator.files import write_dir_atomically
from simulator.models.checkpoint import load_weights, save_codec

__all__ = ["STATE_FILE", "save_stage_checkpoint", "load_stage_checkpoint"]

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"
# What a training-only part is called in the messages of a checkpoint that lacks it.
_PART_NAMES = {"text_tower": "stage vision's text tower",
               "count_head": "stage instruct's count head (count_weight was 0)"}


def save_stage_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int,
                          parts: dict[str, nn.Module | None]) -> None:
    """Write ``folder`` atomically: the codec, and the step, optimizer and ``parts`` (name -> module;
    None: the stage has no such part) in :data:`STATE_FILE`."""
    state = {"step": step, "optimizer": optimizer.state_dict()}
    state.update({name: part.state_dict() for name, part in parts.items() if part is not None})

    def write_checkpoint(tmp: Path) -> None:
        save_codec(model, tmp)
        torch.save(state, tmp / STATE_FILE)

    write_dir_atomically(write_checkpoint, folder)
    logger.info("checkpoint at step %d: %s", step, folder)


def load_stage_checkpoint(folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device,
                          parts: dict[str, nn.Module | None]) -> int:
    """Load what :func:`save_stage_checkpoint` wrote into ``model``, ``optimizer`` and ``parts``;
    returns the step. UserError for an unreadable state file or one without a part the stage has."""
    load_weights(model, folder, str(device))
    try:
        state = torch.load(folder / STATE_FILE, map_location=device, weights_only=True)
    except (OSError, RuntimeError) as err:
        raise UserError(f"cannot read {folder / STATE_FILE}: {err}") from None
    optimizer.load_state_dict(state["optimizer"])
    for name, part in parts.items():
        if part is None:
            continue
        if name not in state:
            raise UserError(f"{folder} was saved without {_PART_NAMES.get(name, name)}: resume with the same "
                            "settings, or delete it to start the stage again")
        part.load_state_dict(state[name])
    return int(state["step"])
