"""Where a codec with a pretrained LLM starts: the architecture from the LLM folder's
``config.json`` and the vision side (encoder + object head) of an earlier codec (``vision_init``),
since such profiles run no stage 0."""

from __future__ import annotations

import logging
from pathlib import Path

from simulator.errors import UserError

__all__ = ["architecture_keys", "copy_vision"]

logger = logging.getLogger(__name__)

# Keys of a pretrained folder's config.json that describe the file, not the architecture.
_NOT_ARCHITECTURE = ("_name_or_path", "architectures", "transformers_version", "dtype", "torch_dtype",
                     "quantization_config", "_commit_hash", "output_attentions", "output_hidden_states", "return_dict")


def architecture_keys(llm: dict) -> dict:
    """The keys of a pretrained folder's config that define the model (not the file's bookkeeping)."""
    return {key: value for key, value in llm.items() if key not in _NOT_ARCHITECTURE}


def copy_vision(model, folder: Path, device) -> None:
    """Load ``vision.*`` and ``object_head.*`` of the codec in ``folder`` into ``model``; UserError
    (one line) when that codec's weights are unreadable or its vision side has other shapes."""
    from simulator.models.checkpoint import CheckpointError, WEIGHTS_FILE, read_weights

    try:
        state = read_weights(folder / WEIGHTS_FILE, str(device))
    except CheckpointError as err:
        raise UserError(f"vision_init: {err}") from None
    own = model.state_dict()
    picked = {k: v for k, v in state.items() if k.startswith(("vision.", "object_head."))}
    wanted = [k for k in own if k.startswith(("vision.", "object_head."))]
    missing = [k for k in wanted if k not in picked]
    wrong = [k for k in picked if k not in own or own[k].shape != picked[k].shape]
    if missing or wrong:
        first = (missing or wrong)[0]
        raise UserError(f"vision_init: the vision encoder in {folder} does not fit this codec's "
                        f"({len(missing)} missing, {len(wrong)} of another shape, e.g. {first})")
    model.load_state_dict(picked, strict=False)
    logger.info("vision encoder and object head from %s", folder)
