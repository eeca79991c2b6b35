"""The workload: tasks, the pool they are drawn from, and their arrivals at the BS.

A :class:`Task` is one instruction for the MLLM (VQA question on an image, caption of an image,
sentiment of a text) drawn from a :class:`TaskPool`. :func:`snapshot_rounds` gives every user one
task per round, all at t = 0 (curves); :func:`poisson_arrivals` gives each user Poisson arrivals.
Same-scene traffic: per snapshot (per run in Poisson mode) ``num_group_tasks`` group tasks are
drawn; each task of each user is, with probability ``shared_task_probability``, one of them instead
of the user's own random task (users in one venue asking about the same scene).

Randomness: the traffic of user ``u`` draws from ``numpy.random.default_rng([seed, 1, u])`` (task
content) and ``[seed, 3, u]`` (arrival times); group tasks from ``[seed, 2, round]``. Adding a user
changes no other user's tasks or arrival times.
"""

from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from simulator.errors import UserError, not_a_folder
from simulator.scenario import TASKS, TrafficSection

__all__ = ["Task", "TaskPool", "Arrival", "snapshot_rounds", "poisson_arrivals", "resolve_clevr_dir"]

logger = logging.getLogger(__name__)

_TASK_CONTENT, _GROUP_TASKS, _ARRIVAL_TIMES = 1, 2, 3


@dataclass(frozen=True)
class Task:
    """One task instance.

    Attributes:
        task_id: identity of the content (same id = same prompt and image = same BS output).
        kind: ``"vqa"``, ``"caption"`` or ``"classify"``.
        input_text: the question (vqa), None (caption: the template's fixed text) or the review (classify).
        image: image file name in the pool's image folder, or None (text tasks).
        references: accepted outputs (vqa answer; caption references; classify label).
        scene: what "same scene" compares: the image file name (text tasks: the task id).
    """

    task_id: str
    kind: str
    input_text: str | None
    image: str | None
    references: tuple[str, ...]
    scene: str


class TaskPool:
    """Tasks per kind from a CLEVR-layout split and a sentiment corpus; loads images on demand.

    Args:
        tasks: kind -> tasks.
        image_dir: folder of the split's images (None without image tasks).
        image_size: side the images are resized to (the codec's vision input), pixels.
    """

    def __init__(self, tasks: dict[str, list[Task]], image_dir: Path | None = None, image_size: int | None = None):
        self.tasks = tasks
        self.image_dir = image_dir
        self.image_size = image_size
        self._images: dict[str, torch.Tensor] = {}

    @classmethod
    def from_sources(cls, kinds: list[str], clevr_dir: Path | None, split: str, text_dir: Path | None,
                     text_subset: str, text_split: str, image_size: int | None) -> "TaskPool":
        """Read the tasks of ``kinds``; UserError naming the data field when a source is missing."""
        from simulator.data.loaders import ClevrCaptionDataset, ClevrVQADataset, SentimentCorpusDataset

        tasks: dict[str, list[Task]] = {}
        image_dir = None
        if "vqa" in kinds:
            vqa = ClevrVQADataset(clevr_dir, split)
            image_dir = vqa.image_dir
            tasks["vqa"] = [Task(f"vqa/{i}", "vqa", q["question"], q["image_filename"], (str(q["answer"]),),
                                 q["image_filename"]) for i, q in enumerate(vqa.questions) if q.get("answer") is not None]
        if "caption" in kinds:
            captions = ClevrCaptionDataset(clevr_dir, split)
            image_dir = captions.image_dir
            tasks["caption"] = [Task(f"caption/{i}", "caption", None, e["image_filename"], tuple(e["captions"]),
                                     e["image_filename"]) for i, e in enumerate(captions.entries)]
        if "classify" in kinds:
            if text_dir is None or not Path(text_dir).is_dir():
                raise UserError(f"data.text_dir: sentiment corpus not found at {text_dir} "
                                f"(prepare it with: python -m simulator data text --out {text_dir})")
            corpus = SentimentCorpusDataset(text_dir, text_split, text_subset)
            tasks["classify"] = [Task(f"classify/{i}", "classify", s["text"], None, (s["label"],), f"classify/{i}")
                                 for i, s in enumerate(corpus.samples)]
        for kind in kinds:
            if not tasks.get(kind):
                raise UserError(f"data: no {kind} tasks with references in the {split} split")
        return cls(tasks, image_dir, image_size)

    def kinds(self) -> list[str]:
        return [k for k in TASKS if k in self.tasks]

    def answer_entropy_bits(self, kind: str) -> float:
        """Entropy (bits) of the first reference's distribution over the pool's ``kind`` tasks: what a
        perfect source code needs per answer on average. NaN for captions (not one answer each)."""
        if kind == "caption" or not self.tasks.get(kind):
            return math.nan
        counts = collections.Counter(task.references[0] for task in self.tasks[kind])
        total = sum(counts.values())
        return float(-sum(n / total * math.log2(n / total) for n in counts.values()))

    def answer_statistics(self, kind: str) -> dict[str, float]:
        """What the Fano bound of ``plot --figure efficiency`` reads of ``kind``'s answers over the pool
        (:func:`channels.bounds.fano_channel_uses`): ``answer_cond_entropy_bits``, the plug-in estimate of
        H(answer | the task's input text), which the asking user holds (a text seen once adds 0; the
        plug-in estimate is biased low, which keeps a lower bound low), and ``num_answers``, the
        distinct answers. NaN for captions."""
        if kind == "caption" or not self.tasks.get(kind):
            return {"answer_cond_entropy_bits": math.nan, "num_answers": math.nan}
        by_input = collections.defaultdict(collections.Counter)
        for task in self.tasks[kind]:
            by_input[task.input_text][task.references[0]] += 1
        total = len(self.tasks[kind])
        conditional = sum(n / total * -math.log2(n / sum(counts.values()))
                          for counts in by_input.values() for n in counts.values())
        answers = {task.references[0] for task in self.tasks[kind]}
        return {"answer_cond_entropy_bits": float(conditional), "num_answers": float(len(answers))}

    def load_image(self, filename: str) -> torch.Tensor:
        """``[3, H, W]`` float32 in [0, 1] at ``image_size`` (cached)."""
        from simulator.data.loaders import load_image

        if filename not in self._images:
            if self.image_dir is None:
                raise ValueError("this task pool has no images")
            self._images[filename] = load_image(self.image_dir / filename, self.image_size)
        return self._images[filename]


@dataclass(frozen=True)
class Arrival:
    """A task of ``user`` arriving at the BS at ``time_s`` seconds; ``group`` = group-task index or None."""

    user: int
    time_s: float
    task: Task
    group: int | None = None


def _task_sampler(traffic: TrafficSection, pool: TaskPool):
    kinds = traffic.active_tasks()
    weights = np.array([traffic.tasks[k] for k in kinds], dtype=np.float64)
    weights /= weights.sum()

    def draw(rng: np.random.Generator) -> Task:
        """Exactly two draws from ``rng``: the kind, then the item."""
        kind = kinds[int(rng.choice(len(kinds), p=weights))]
        items = pool.tasks[kind]
        return items[int(rng.integers(len(items)))]

    return draw


def _user_task(rng: np.random.Generator, traffic: TrafficSection, groups: list[Task], draw) -> tuple[Task, int | None]:
    """One task of a user: a fixed number of draws whatever the outcome (streams stay aligned)."""
    shared = rng.random() < traffic.shared_task_probability
    group = int(rng.integers(len(groups)))
    own = draw(rng)
    return (groups[group], group) if shared else (own, None)


def snapshot_rounds(traffic: TrafficSection, pool: TaskPool, num_users: int, seed: int) -> list[list[Arrival]]:
    """``traffic.rounds`` snapshots; in each, one task per user at t = 0. Returns ``[round][user]``."""
    draw = _task_sampler(traffic, pool)
    user_rngs = [np.random.default_rng([seed, _TASK_CONTENT, u]) for u in range(num_users)]
    rounds = []
    for r in range(traffic.rounds):
        group_rng = np.random.default_rng([seed, _GROUP_TASKS, r])
        groups = [draw(group_rng) for _ in range(traffic.num_group_tasks)]
        arrivals = []
        for user, rng in enumerate(user_rngs):
            task, group = _user_task(rng, traffic, groups, draw)
            arrivals.append(Arrival(user, 0.0, task, group))
        rounds.append(arrivals)
    return rounds


def poisson_arrivals(traffic: TrafficSection, pool: TaskPool, num_users: int, seed: int) -> list[Arrival]:
    """Per-user Poisson arrivals at ``arrival_rate_hz`` in ``[0, duration_s)``, sorted by (time, user)."""
    draw = _task_sampler(traffic, pool)
    groups = [draw(np.random.default_rng([seed, _GROUP_TASKS, 0])) for _ in range(traffic.num_group_tasks)]
    arrivals = []
    for user in range(num_users):
        time_rng = np.random.default_rng([seed, _ARRIVAL_TIMES, user])
        content_rng = np.random.default_rng([seed, _TASK_CONTENT, user])
        t = float(time_rng.exponential(1.0 / traffic.arrival_rate_hz))
        while t < traffic.duration_s:
            task, group = _user_task(content_rng, traffic, groups, draw)
            arrivals.append(Arrival(user, t, task, group))
            t += float(time_rng.exponential(1.0 / traffic.arrival_rate_hz))
    return sorted(arrivals, key=lambda a: (a.time_s, a.user))


def resolve_clevr_dir(data, split: str) -> Path:
    """The CLEVR-layout folder of the run: ``data.clevr_dir``, or an eval set generated once into
    ``data.cache_dir`` (default :func:`~simulator.assets.eval_set_dir`, the folder the ``eval``
    command uses too) with all images in the test split, of preset ``data.preset``."""
    if data.clevr_dir is not None:
        root = Path(data.clevr_dir).expanduser()
        if not root.is_dir():
            raise UserError(f"data.clevr_dir: {not_a_folder(root)}")
        return root
    from simulator.assets import ensure_eval_set, eval_set_dir

    root = Path(data.cache_dir).expanduser() if data.cache_dir else \
        eval_set_dir(data.preset, data.generator_seed, data.num_images)
    if not (root / "questions" / f"CLEVR_{split}_questions.json").is_file():
        logger.info("generating %d CLEVR-like test images (preset %s, seed %d) into %s", data.num_images, data.preset,
                    data.generator_seed, root)
        try:
            ensure_eval_set(root, data.generator_seed, data.num_images, own_cache=data.cache_dir is None,
                            preset=data.preset)
        except UserError as err:
            raise UserError(f"data.cache_dir: cannot generate the eval set in {root}: {err}") from None
    return root
