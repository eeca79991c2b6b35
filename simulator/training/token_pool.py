"""Stage 3 on cached hidden states: the output tokens of a fixed pool of samples, computed once.

With the LLM, the projector and the vision encoder frozen (``trainable: [channel_codec]`` or
``[rate_codes]``), the hidden state a training token hands the channel encoder never changes, so the
stage can run the LLM once per sample instead of once per step. For Gemma-3-270M on a 2-core CPU the
LLM's forward pass is about 60% of a joint step and the 262,144-word LM head most of the rest;
``pool_top_words`` then restricts the CE's softmax to the words that matter (below). The price is a
finite pool: the stage sees ``pool_samples`` samples, each many times, under fresh channel noise and
rates every step.

The restricted softmax (``pool_top_words = K``) runs the CE through the channel over the union of
every pool target word and the K words each token's noise-free LM head ranks highest, a fixed word
list of the pool (the "target vocabulary" of sampled-softmax training, Jean et al. 2015, with the
candidates taken from the frozen head instead of sampled). It is the exact CE whenever the words left
out carry no probability mass; evaluation always uses the full head, so any word left out that wins
after the channel shows up in the scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from simulator.files import atomic_write_bytes
from simulator.training.distributed import barrier

__all__ = ["TokenPool", "build_token_pool", "frozen_parameters_sha256", "stage_token_pool"]

POOL_FILE = "token_pool.safetensors"

logger = logging.getLogger(__name__)

_TENSORS = ("hidden", "targets", "bs_targets", "clean_ce", "starts", "words")


@dataclass
class TokenPool:
    """The output tokens of ``N`` samples, ``T`` tokens in all.

    Attributes:
        hidden: ``[T, d]`` float32, the final hidden state that predicts each token (the channel
            encoder's input).
        targets: ``[T]`` int64, the reference tokens.
        bs_targets: ``[T]`` int64, the token the noise-free LM head picks (what the BS says).
        clean_ce: ``[T]`` float32, the noise-free LM head's CE with the reference token (nats; a
            constant of the stage, kept so the logged loss reads as without the pool).
        starts: ``[N + 1]`` int64, sample ``i``'s tokens are ``starts[i]:starts[i + 1]``.
        words: ``[V']`` int64, ascending, the words of the restricted softmax; None: the full head.
    """

    hidden: torch.Tensor
    targets: torch.Tensor
    bs_targets: torch.Tensor
    clean_ce: torch.Tensor
    starts: torch.Tensor
    words: torch.Tensor | None = None

    @property
    def num_samples(self) -> int:
        return self.starts.numel() - 1

    def tokens(self, rows: torch.Tensor) -> torch.Tensor:
        """``[M]`` int64 token indices of the samples ``rows [B]``, sample by sample."""
        lengths = self.starts[rows + 1] - self.starts[rows]
        first = torch.repeat_interleave(self.starts[rows], lengths)
        within = torch.arange(int(lengths.sum())) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        return first + within

    def save(self, path: Path, settings: dict) -> None:
        """Write atomically as safetensors, ``settings`` (JSON-able) in the metadata."""
        from safetensors.torch import save

        tensors = {name: getattr(self, name).contiguous() for name in _TENSORS if getattr(self, name) is not None}
        atomic_write_bytes(path, save(tensors, metadata={"settings": json.dumps(settings, sort_keys=True)}))

    @classmethod
    def load(cls, path: Path, settings: dict | None) -> "TokenPool | None":
        """The pool at ``path`` if it was built with ``settings`` (None: whatever it was built with);
        None otherwise, or when the file is unreadable or not a token pool."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                built_with = (handle.metadata() or {}).get("settings")
                if settings is not None and built_with != json.dumps(settings, sort_keys=True):
                    return None
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except (OSError, SafetensorError):
            return None
        if not set(_TENSORS) - {"words"} <= tensors.keys() <= set(_TENSORS):
            return None
        return cls(**tensors)


@torch.no_grad()
def build_token_pool(model, batches: Iterable[dict], top_words: int = 0) -> TokenPool:
    """Run the frozen codec over ``batches`` (collated samples) once: every output token's hidden
    state, reference and BS token and noise-free CE, and with ``top_words > 0`` the restricted
    softmax's word list (module docstring)."""
    from simulator.training.stages import pixel_values_of, target_hidden_states

    was_training = model.training
    model.eval()  # a fixed pool: no dropout (LoRA dropout, if set, would freeze one draw per sample)
    hidden, targets, bs_targets, clean_ce, lengths, candidates = [], [], [], [], [], []
    device = model.channel_encoder.linear.weight.device
    try:
        for batch in batches:
            pixel_values, has_image = pixel_values_of(batch, device)
            token_hidden, token_targets = target_hidden_states(model, batch, pixel_values, has_image)
            logits = model.logits(token_hidden).float()
            hidden.append(token_hidden.float().cpu())
            targets.append(token_targets.cpu())
            bs_targets.append(logits.argmax(-1).cpu())
            clean_ce.append(F.cross_entropy(logits, token_targets, reduction="none").cpu())
            if top_words:
                candidates.append(logits.topk(top_words, dim=-1).indices.flatten().unique().cpu())
            lengths += _tokens_per_sample(batch)
    finally:
        model.train(was_training)
    starts = torch.zeros(len(lengths) + 1, dtype=torch.int64)
    starts[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int64), 0)
    pool = TokenPool(torch.cat(hidden), torch.cat(targets), torch.cat(bs_targets), torch.cat(clean_ce), starts)
    if int(starts[-1]) != pool.targets.numel():
        raise RuntimeError(f"token pool: {int(starts[-1])} labelled positions counted, {pool.targets.numel()} found")
    if top_words:
        pool.words = torch.cat([pool.targets, pool.bs_targets, *candidates]).unique()
    return pool


def _tokens_per_sample(batch: dict) -> list[int]:
    """Labelled tokens per row of a collated batch, the row order of ``target_hidden_states`` (visual
    tokens go in unlabelled, so the count is the text labels')."""
    from simulator.data.collate import IGNORE_INDEX

    return (batch["labels"] != IGNORE_INDEX).sum(1).tolist()


def frozen_parameters_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the names and fp32 values of ``model``'s frozen parameters (what a pool depends on)."""
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def stage_token_pool(trainer, name: str, stage, model, collator, task_names: list[str],
                     probabilities: torch.Tensor, autocast: torch.dtype | None = None) -> TokenPool:
    """Stage ``name``'s pool for ``trainer`` (a :class:`~simulator.training.trainer.Trainer`): read
    from the stage folder when it was built from the same frozen weights, data, settings and
    ``autocast`` dtype, else built (rank 0) under that autocast and written there."""
    from tqdm import tqdm

    from simulator.training.data import batch_generator

    config = trainer.config
    settings = {"frozen_sha256": frozen_parameters_sha256(model), "seed": config.seed, "stage": name,
                "samples": stage.pool_samples, "top_words": stage.pool_top_words, "batch_size": stage.batch_size,
                "tasks": stage.tasks, "word_dropout": stage.word_dropout, "data": config.data.model_dump(),
                "max_prompt_tokens": config.max_prompt_tokens, "instructions": model.config.instructions}
    if autocast is not None:  # pools built in fp32 keep the settings (and so the files) they had before
        settings["autocast"] = str(autocast).removeprefix("torch.")
    path = config.stage_dir(name) / POOL_FILE
    pool = TokenPool.load(path, settings) if path.is_file() else None
    if pool is None and trainer.rank == 0:
        data, unk = trainer.train_data, model.tokenizer.unk_token
        counts = [min(stage.batch_size, stage.pool_samples - start) for start in range(0, stage.pool_samples, stage.batch_size)]

        def batches():
            for index, count in enumerate(tqdm(counts, desc=f"stage {name}: token pool", leave=False,
                                               disable=not trainer.progress)):
                generator = batch_generator(config.seed, f"{name}_pool", index)
                yield collator(data.sample_mixture(task_names, probabilities, count, generator, stage.word_dropout, unk))

        began = time.perf_counter()
        device_type = trainer.device.type
        with torch.autocast(device_type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            pool = build_token_pool(model, batches(), stage.pool_top_words)
        path.parent.mkdir(parents=True, exist_ok=True)
        pool.save(path, settings)
        logger.info("stage %s: token pool of %d samples (%d tokens, %s words) in %.0f s: %s", name, pool.num_samples,
                    pool.targets.numel(), "all" if pool.words is None else pool.words.numel(),
                    time.perf_counter() - began, path)
    barrier()
    return pool if pool is not None else TokenPool.load(path, settings)
