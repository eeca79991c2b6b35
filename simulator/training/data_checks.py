"""What a training stage does where the training data lacks a part it uses (captions, scene files,
a task's samples), and the summary of the data a run trained on, for the model card."""

from __future__ import annotations

from simulator.errors import UserError

__all__ = ["stage_fallbacks", "data_report"]


def stage_fallbacks(config, data, name: str) -> list[str]:
    """What stage ``name`` of ``config`` (a :class:`~simulator.training.config.TrainConfig`) does
    instead where the training data ``data`` (:class:`~simulator.training.data.TaskData`) lacks a part
    it uses, one sentence each (logged at the stage's start and recorded in the model card). Raises
    UserError when the stage has nothing to train on."""
    stage, folder = config.stages[name], config.data.clevr_dir
    notes = []
    if name in ("vision", "align") and not data.captions:
        if not data.vqa:
            raise UserError(f"stage {name}: {folder} has neither captions nor answered questions for the train split")
        notes.append("stage vision: no captions, so the SigLIP texts are each image's questions followed by their answers"
                     if name == "vision" else "stage align: no captions, so it aligns on the question/answer pairs instead")
    if name == "anchor" and data.objects is None:
        raise UserError(f"stage anchor: {folder} has no scene files for the train split, and the object tokens' "
                        "word targets are the scenes' labels")
    if name == "vision" and stage.object_weight > 0 and data.objects is None:
        notes.append(f"stage vision: no scene files, so the scene-graph loss (object_weight {stage.object_weight:g}) "
                     "is left out")
    if name == "lm" and not any(data.task_sizes().values()):
        raise UserError(f"stage lm: no texts to learn from in {folder} or the sentiment corpus")
    if name == "lm" and not data.captions:
        notes.append("stage lm: no captions, so the language model learns from the other task texts only")
    if name in ("instruct", "joint", "rates"):
        sizes = data.task_sizes()
        dropped = [task for task, weight in stage.tasks.items() if weight > 0 and not sizes[task]]
        if dropped:
            notes.append(f"stage {name}: no {' or '.join(dropped)} data, so the task mixture leaves it out")
    return notes


def data_report(config, data) -> dict:
    """What a run of ``config`` trained on, for the model card: the folder, its train-split counts
    (``data``), the parts it lacks (see ``TaskData.missing``) and every stage's fallbacks."""
    from simulator.data.clevr_generator import is_generated

    return {"clevr_dir": config.data.clevr_dir, "generated": is_generated(config.data.clevr_dir),
            "train_images": len(data.images), "train_questions": len(data.vqa),
            "captioned_images": len(data.captions), "missing": list(data.missing),
            "fallbacks": [note for name in config.stage_names("all") for note in stage_fallbacks(config, data, name)]}
