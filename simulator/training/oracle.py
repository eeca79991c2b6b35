"""Oracle visual tokens: an upper bound on what stage 2 can learn when the visual tokens are perfect.

Each image is replaced by a uint8 picture whose patch at an object's centre spells that object's
colour, shape, size and material (from the generator's scene files; see
``TaskData.patch_targets``), and zero elsewhere; the projector is replaced by embedding tables that
read those codes, and the vision encoder is bypassed. Everything else is the run's stage 2. With
``codec.ignore_images`` (the lower bound) it brackets what the vision encoder contributes.

    python -m simulator.training.oracle scenarios/train_tiny.yaml RUN_DIR [--set key=value ...]

``RUN_DIR`` must hold ``stage1_align/final`` and ``tokenizer`` of a run; prints BS VQA accuracy on
held-out questions, overall and per question family. A diagnostic: the result is not a codec the
simulator can load.
"""

from __future__ import annotations

import argparse
import collections
import types

import torch
from torch import nn

from simulator.data.clevr_stats import FAMILY_NAMES
from simulator.errors import UserError
from simulator.training.data import TaskData

__all__ = ["oracle_images", "OracleProjector", "use_oracle_tokens", "oracle_vqa_accuracy"]

CODE_STEP = 20  # grey levels per code: survives the [-1, 1] pixel normalisation exactly
CODE_LIMITS = (8, 3, 8)  # colour + 1, shape + 1, (size + 1) * 3 + material + 1


def oracle_images(data: TaskData, patch_size: int) -> torch.Tensor:
    """``[N, 3, H, W]`` uint8: the patch holding an object's centre carries its attribute codes."""
    codes = data.patch_targets(patch_size)  # [N, P, 4], attribute + 1, 0 = no object centre
    n, num_patches, _ = codes.shape
    grid = int(round(num_patches ** 0.5))
    channels = torch.stack([codes[..., 0], codes[..., 1], codes[..., 2] * 3 + codes[..., 3]], 1) * CODE_STEP
    image = channels.view(n, 3, grid, grid).repeat_interleave(patch_size, 2).repeat_interleave(patch_size, 3)
    return image.to(torch.uint8)


class OracleProjector(nn.Module):
    """Pixel values ``[B, 3, H, W]`` of :func:`oracle_images` -> visual tokens ``[B, P, d]``."""

    def __init__(self, hidden_size: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.tables = nn.ModuleList(nn.Embedding(limit + 1, hidden_size) for limit in CODE_LIMITS)

    def codes(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``[B, 3, P]`` int64 codes (rows without an image, all zeros in pixel space, read as clamped codes)."""
        codes = ((pixel_values + 1) * 127.5 / CODE_STEP).round().long()
        codes = codes[:, :, :: self.patch_size, :: self.patch_size].flatten(2)
        limits = torch.tensor(CODE_LIMITS, device=codes.device)[None, :, None]
        return torch.minimum(codes.clamp(min=0), limits)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        codes = self.codes(pixel_values)
        return sum(table(codes[:, k]) for k, table in enumerate(self.tables))


def use_oracle_tokens(model, seed: int = 0) -> None:
    """Swap ``model``'s projector for an :class:`OracleProjector` (tables drawn from ``seed``, the
    global generator untouched) and bypass its vision encoder."""
    patch_size = int(model.vision.config.patch_size)
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        projector = OracleProjector(model.config.hidden_size, patch_size)
    model.projector = projector.to(device)
    # The "features" the projector reads are the oracle pictures themselves.
    model.vision_features = types.MethodType(lambda self, pixel_values: pixel_values, model)


def oracle_vqa_accuracy(model, data: TaskData, num_questions: int = 1000, batch_size: int = 100) -> dict:
    """BS accuracy (:func:`simulator.evaluation.evaluate`, noise-free) on the first ``num_questions``
    of ``data`` with oracle pictures: per question family, and overall as their count-weighted mean."""
    from simulator.evaluation import EvalSample, evaluate

    model.eval()
    pictures = oracle_images(data, int(model.vision.config.patch_size)).float() / 255  # EvalSample's [0, 1]
    by_family = collections.defaultdict(list)
    for row, question, answer, family in data.vqa[:num_questions]:
        by_family[FAMILY_NAMES.get(family, str(family))].append(EvalSample("vqa", question, [answer], pictures[row]))
    families = {}
    for name, samples in by_family.items():
        row = evaluate(model, samples, "awgn", [float("inf")], batch_size=batch_size)[0]
        families[name] = {"accuracy_noiseless": row["accuracy_noiseless"], "num_samples": row["num_samples"]}
    total = sum(f["num_samples"] for f in families.values())
    overall = sum(f["accuracy_noiseless"] * f["num_samples"] for f in families.values()) / total
    return {"accuracy_noiseless": overall, "num_samples": total, "families": families}


def main(argv: list[str] | None = None) -> dict:
    import json

    from simulator.config_io import load_yaml_config
    from simulator.assets import default_eval_clevr_dir
    from simulator.models.checkpoint import load_codec
    from simulator.training.config import TrainConfig
    from simulator.training.data import load_task_data
    from simulator.training.trainer import Trainer

    parser = argparse.ArgumentParser(prog="python -m simulator.training.oracle", description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("run_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--eval-data", default=None, help="CLEVR-layout folder with a test split (default: the eval set)")
    parser.add_argument("--num-samples", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.num_samples < 1:
        raise UserError(f"--num-samples must be at least 1, got {args.num_samples}")
    config = load_yaml_config(args.config, TrainConfig, args.set + [f"out_dir={args.run_dir}"])
    start = config.stage_dir("align") / "final"
    if not (start / "config.json").is_file():
        raise UserError(f"{start} does not exist: copy a run's stage1_align and tokenizer into {args.run_dir}")
    if config.stage_dir("instruct").exists():
        raise UserError(f"{config.stage_dir('instruct')} exists: an oracle run trains stage 2 afresh, use a new RUN_DIR")
    trainer = Trainer(config)
    trainer.prepare()
    patch_size = int(config.codec_config().vision["patch_size"])
    trainer.train_data.images = oracle_images(trainer.train_data, patch_size)
    model = load_codec(start, str(trainer.device))
    if model.config.visual_tokens != "patches":
        raise UserError("the oracle replaces patch tokens; this run's codec uses codec.visual_tokens='objects'")
    use_oracle_tokens(model, config.seed)
    model, _ = trainer.run_stage("instruct", model, resume=False)
    eval_dir = args.eval_data or default_eval_clevr_dir(preset=config.data.preset)
    test = load_task_data(config.data.model_copy(update={"clevr_dir": str(eval_dir)}), "test", referred=False)
    result = oracle_vqa_accuracy(model, test, args.num_samples)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    import sys

    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
