"""The model card of a trained codec: data, stages (steps, time), command, commit, measured scores."""

from __future__ import annotations

import csv
import json
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["stage_summary", "git_commit", "write_model_card"]


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The current commit of the source tree (with ``-dirty`` when it has changes), or None."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def stage_summary(log_path: str | Path, default_stage: str = "train") -> list[dict]:
    """Per stage: steps, final loss (mean of the last 4 log rows), wall time in s, from ``train_log.csv``.

    ``elapsed_s`` restarts at 0 when a stage is resumed, so the time is summed over those segments.
    A log without a ``stage`` column (the baselines' single-stage runs) is one stage, ``default_stage``.
    """
    out: dict[str, dict] = {}
    for row in csv.DictReader(Path(log_path).open()):
        stage = row.get("stage", default_stage)
        entry = out.setdefault(stage, {"stage": stage, "losses": [], "steps": 0, "done_s": 0.0, "segment_s": 0.0})
        elapsed = float(row["elapsed_s"])
        if elapsed < entry["segment_s"]:
            entry["done_s"] += entry["segment_s"]
        entry["segment_s"] = elapsed
        entry["steps"] = max(entry["steps"], int(row["step"]))
        entry["losses"].append(float(row["loss"]))
    summary = []
    for entry in out.values():
        tail = entry.pop("losses")[-4:]
        summary.append({"stage": entry["stage"], "steps": entry["steps"],
                        "final_loss": round(sum(tail) / len(tail), 4),
                        "time_s": round(entry.pop("done_s") + entry.pop("segment_s"), 1)})
    return summary


def write_model_card(checkpoint_dir: str | Path, train_config, command: str, stages: list[dict],
                     scores: list[dict], notes: str = "") -> Path:
    """Write ``MODEL_CARD.md`` and ``model_card.json`` into ``checkpoint_dir``."""
    checkpoint_dir = Path(checkpoint_dir)
    card = {
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "commit": git_commit(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "data": train_config.data.model_dump(),
        "profile": train_config.profile,
        "stages": stages,
        "total_train_time_s": round(sum(s["time_s"] for s in stages), 1),
        "scores": scores,
    }
    (checkpoint_dir / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    lines = [
        f"# M4SC codec, profile `{card['profile']}`", "",
        f"Trained with `{command}` at commit `{card['commit']}` ({card['machine']}).", "",
        "## Data", "",
        f"CLEVR-like images: {train_config.data.num_images} generated with seed {train_config.data.generator_seed} "
        f"at {train_config.data.image_size} px, {train_config.data.questions_per_image} questions per image; "
        f"sentiment: `{train_config.data.text_source}` corpus, subset `{train_config.data.text_subset}`. "
        "Test scores below use test data generated with seed 12345 (never used in training).", "",
        "## Stages", "",
        "| stage | steps | final loss | wall time (s) |", "|---|---|---|---|",
    ]
    lines += [f"| {s['stage']} | {s['steps']} | {s['final_loss']} | {s['time_s']} |" for s in stages]
    lines += ["", f"Total training time: {card['total_train_time_s'] / 3600:.2f} h.", "", "## Scores", "",
              "| task | channel | snr_db | metric | value | BS output | samples |", "|---|---|---|---|---|---|---|"]
    for row in scores:
        metric = "accuracy" if "accuracy" in row else "bleu"
        snr = "noise-free" if row["snr_db"] is None else row["snr_db"]
        lines.append(f"| {row['task']} | {row['channel']} | {snr} | {metric} | {row[metric]:.4f} | "
                     f"{row[metric + '_bs']:.4f} | {row['num_samples']} |")
    if notes:
        lines += ["", "## Notes", "", notes]
    path = checkpoint_dir / "MODEL_CARD.md"
    path.write_text("\n".join(lines) + "\n")
    return path
