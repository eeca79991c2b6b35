"""The model card of a trained baseline (``MODEL_CARD.md`` + ``model_card.json`` in ``out_dir/final``),
written by the codec's card writer (:func:`simulator.training.model_card.write_card`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from simulator.baselines.evaluate import NOISE_FREE
from simulator.baselines.train_config import DeepSCTrainConfig, DeepSCVQATrainConfig
from simulator.models.checkpoint import CONFIG_FILE
from simulator.training.model_card import stage_summary, write_card

__all__ = ["write_baseline_card"]

_TITLES = {"deepsc": "DeepSC (Xie et al., IEEE TSP 2021)", "deepsc_vqa": "DeepSC-VQA (Xie et al., IEEE JSAC 2022)"}


def _image_user_description(model_config: dict) -> str:
    """What DeepSC-VQA's image user is, for the model card (from the stored model config)."""
    ablation = ("Compare with the text-only ablation (`--set architecture.text_only=true`), which answers "
                "from the question alone.")
    if model_config.get("text_only"):
        return ("None: this is the text-only ablation (`architecture.text_only: true`). The receiver never gets "
                "the image semantics, so it answers from the question alone; its accuracy is the question-only "
                "level the full model has to beat.")
    vision = model_config.get("vision_encoder")
    if not vision:
        return "A CNN (three stride-2 convolutions) trained from scratch with the answer loss. " + ablation
    if vision["tokens"] == "objects":
        tokens = (f"its image tokens are the patches the codec's object-centre head picks (at most "
                  f"{vision['max_objects']}; only found objects are sent and counted)")
    else:
        tokens = "its image tokens are all the encoder's patches"
    extras = ""
    if vision.get("attributes"):
        extras += " plus a learned embedding of the object head's attribute probabilities"
    grounding = ""
    if model_config.get("grounding_weight"):
        grounding = (f"Training adds the grounding loss (weight {model_config['grounding_weight']:g}): from the "
                     f"receiver's fused features, whether each question word names an attribute of each sent "
                     f"object, as the object head sees it. ")
    return (f"The SigLIP vision encoder of the M4SC codec `{vision['source']}` (the codec's stage-0 pre-training), "
            f"{'frozen' if vision['freeze'] else 'fine-tuned with the answer loss'}, in place of the paper's "
            f"pretrained ResNet-101; {tokens}, each mapped by a linear layer to d_model with a learned "
            f"patch-position embedding{extras}. " + grounding + ablation)


def write_baseline_card(config: DeepSCTrainConfig | DeepSCVQATrainConfig, command: str) -> Path:
    """Write ``MODEL_CARD.md`` + ``model_card.json`` into ``out_dir/final`` from the run's
    ``train_log.csv`` (steps, final loss, wall time summed over resumed segments) and ``eval.csv``."""
    out_dir = Path(config.out_dir)
    final = out_dir / "final"
    runs = stage_summary(out_dir / "train_log.csv", default_stage=config.model)
    summary = runs[0] if runs else {"steps": 0, "final_loss": None, "time_s": 0.0}
    evaluation = list(csv.DictReader((out_dir / "eval.csv").open())) if (out_dir / "eval.csv").is_file() else []
    data = {"text_dir": config.text_dir, "text_subset": config.text_subset} if isinstance(config, DeepSCTrainConfig) \
        else {"clevr_dir": config.clevr_dir, "image_size": config.image_size}
    architecture = json.loads((final / CONFIG_FILE).read_text()) if (final / CONFIG_FILE).is_file() else {}
    training = {**config.training.model_dump(), "steps_done": summary["steps"], "final_loss": summary["final_loss"],
                "time_s": summary["time_s"]}
    card = {"model": config.model, "data": data, "architecture": architecture, "training": training,
            "scores": evaluation}
    title = _TITLES[config.model]
    model_config = architecture.get("config", {})
    if model_config.get("text_only"):
        title += ", text-only ablation"
    sections = [("Data", [", ".join(f"{k}: `{v}`" for k, v in data.items()) +
                          " (test scores on the held-out split, never used in training)."])]
    if config.model == "deepsc_vqa":
        sections.append(("Image user", [_image_user_description(model_config)]))
    schedule = config.training
    sections.append(("Training", [
        f"{training['steps_done']} steps of {schedule.batch_size}, lr {schedule.lr}, SNR "
        f"{schedule.snr_db[0]:g}..{schedule.snr_db[1]:g} dB over {', '.join(schedule.channels)} "
        f"({schedule.equalizer}); final loss {training['final_loss']}; {training['time_s'] / 60:.1f} min wall."]))

    def cell(value: str, digits: int) -> str:
        number = float(value)
        return "-" if number != number else f"{number:.{digits}f}"

    scores = ["| task | channel | snr_db | accuracy | bleu4 | samples | symbols per sample |", "|---|---|---|---|---|---|---|"]
    for row in evaluation:
        snr = "noise-free" if row["channel"] == NOISE_FREE else row["snr_db"]
        accuracy = "-" if row["task"] == "reconstruct" else cell(row["accuracy"], 3)
        scores.append(f"| {row['task']} | {row['channel']} | {snr} | {accuracy} | {cell(row['bleu4'], 3)} | "
                      f"{row['num_samples']} | {cell(row['symbols_per_sample'], 1)} |")
    sections.append(("Scores", scores))
    return write_card(final, f"{title}, tiny", command, card, sections)
