"""``python -m simulator train TRAIN.yaml``: the three-stage training of the semantic codec
(plus the tiny profile's pre-training stages; see :mod:`simulator.training.config`), or of a
baseline when the file says ``model: deepsc`` or ``model: deepsc_vqa``
(see :mod:`simulator.baselines.train`)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_arguments", "main"]


def add_arguments(parser) -> None:
    parser.add_argument("config", help="training YAML (e.g. scenarios/train_tiny.yaml)")
    parser.add_argument("--stage", default="all",
                        help="all (default), a stage number 0-3, or a stage name (vision, lm, anchor, align, instruct, joint, rates)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted stage from its last checkpoint")
    parser.add_argument("--out", default=None, help="run folder (overrides out_dir)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set stages.joint.steps=100 (repeatable)")
    parser.add_argument("--score", action="store_true",
                        help="after the last stage, score the codec on the held-out sets into its model card (~5 min on CPU)")


def main(args) -> int:
    import logging

    from simulator.config_io import load_yaml_config
    from simulator.errors import UserError
    from simulator.models.checkpoint import CheckpointError
    from simulator.training.config import TrainConfig

    from simulator.config_io import read_yaml

    overrides = list(args.set)
    if args.out:
        overrides.append(f"out_dir={args.out}")
    model_kind = read_yaml(args.config).get("model", "m4sc")
    if model_kind in ("deepsc", "deepsc_vqa"):
        return _train_baseline(args, overrides)
    config = load_yaml_config(args.config, TrainConfig, overrides)
    try:
        config.stage_names(args.stage)
    except ValueError as err:
        raise UserError(str(err)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from simulator.training.trainer import Trainer

    distributed = _init_distributed(config)
    trainer = Trainer(config, progress=True)
    try:
        result = trainer.run(args.stage, resume=args.resume)
    except CheckpointError as err:
        raise UserError(str(err)) from None
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()
    if not distributed or int(__import__("os").environ.get("RANK", "0")) == 0:
        if result == Path(config.out_dir) / "final":
            card = _write_card(trainer, args)
            print(f"trained codec: {result} (model card: {card})")
        else:
            print(f"trained codec: {result}")
    return 0


def _write_card(trainer, args) -> Path:
    """The model card of a finished run, with held-out scores when ``--score`` asks for them."""
    import csv

    from simulator.training.model_card import stage_summary, write_model_card

    config = trainer.config
    log = Path(config.out_dir) / "train_log.csv"
    command = " ".join(["python -m simulator train", str(args.config)] + [f"--set {o}" for o in args.set]
                       + ([f"--out {args.out}"] if args.out else []))
    scores = []
    if args.score:
        from simulator.training.model_card import score_codec

        scores = score_codec(Path(config.out_dir) / "final", config.data.preset, config.data.text_dir,
                             config.data.text_subset)
    curve_path = Path(config.out_dir) / "val_log.csv"
    curve = list(csv.DictReader(curve_path.open())) if curve_path.is_file() else None
    return write_model_card(Path(config.out_dir) / "final", config, command,
                            stage_summary(log) if log.is_file() else [], scores, data_report=trainer.data_report(),
                            curve=curve)


def _init_distributed(config) -> bool:
    """Join the process group that ``torchrun --nproc_per_node=N -m simulator train ...`` sets up
    (NCCL with one GPU per process, gloo on CPUs). Returns False for a plain single-process run."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch
    import torch.distributed as dist

    from simulator.device import resolve_device

    use_cuda = resolve_device(config.device).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return True


def _train_baseline(args, overrides: list[str]) -> int:
    import logging

    from simulator.baselines.model_card import write_baseline_card
    from simulator.baselines.train import train_baseline
    from simulator.baselines.train_config import load_train_config
    from simulator.errors import UserError
    from simulator.models.checkpoint import CheckpointError

    if args.stage != "all":
        raise UserError("--stage applies to the M4SC codec only; baselines train in one stage")
    config = load_train_config(args.config, overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        result = train_baseline(config, resume=args.resume, progress=True)
    except CheckpointError as err:
        raise UserError(str(err)) from None
    command = " ".join(["python -m simulator train", str(args.config)] + [f"--set {o}" for o in args.set])
    card = write_baseline_card(config, command)
    print(f"trained {config.model}: {result} (model card: {card})")
    return 0
