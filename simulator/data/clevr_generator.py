"""CLEVR-like data set generator writing the CLEVR v1.0 layout.

Output (``root``)::

    images/<split>/CLEVR_<split>_<6-digit index>.png
    scenes/CLEVR_<split>_scenes.json          # CLEVR scene records
    questions/CLEVR_<split>_questions.json    # CLEVR questions with programs and answers
    captions/CLEVR_<split>_captions.json      # project extension: reference captions per image
    stats.json                                # answer balance per question family

Determinism: image ``i`` of split ``s`` draws from ``SeedSequence(seed, spawn_key=(s, i))``, so
its scene, questions and captions depend only on (seed, split, index, settings), never on the
other images or on the number of worker processes. PNGs carry no metadata; JSON has no dates.
Unlike real CLEVR, the generated test split keeps its answers and programs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from simulator.data.captions import generate_captions
from simulator.data.clevr_stats import question_statistics
from simulator.data.questions import generate_questions
from simulator.data.render import encode_png
from simulator.data.scene import SceneConfig, sample_scene
from simulator.errors import UserError

__all__ = ["SPLITS", "PRESETS", "DEFAULT_PRESET", "preset_settings", "GeneratorConfig", "split_sizes", "image_filename",
           "generate_clevr", "is_generated", "data_preset", "write_json"]

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_KEY = {name: k for k, name in enumerate(SPLITS)}
VERSION = "1.0"
GENERATOR = "m4sc CLEVR-like generator"


# Named data statistics (``--preset``). ``clevr`` is real CLEVR's 3-10 objects per scene, for large
# codecs and GPU training. ``clevr_small`` keeps every question family and at least 3 objects, but
# with at most 5 objects at 96 px a small object spans ~8 px instead of ~5 px and is rarely occluded:
# a CPU-trained tiny codec can resolve shape and still has to look (see the codec's model card).
PRESETS: dict[str, dict[str, int]] = {
    "clevr": {"min_objects": 3, "max_objects": 10, "image_size": 64},
    "clevr_small": {"min_objects": 3, "max_objects": 5, "image_size": 96},
}
DEFAULT_PRESET = "clevr"


def preset_settings(name: str) -> dict[str, int]:
    """Object counts and image size of preset ``name``; UserError for an unknown name."""
    if name not in PRESETS:
        raise UserError(f"unknown data preset {name!r}; presets are {', '.join(PRESETS)}")
    return dict(PRESETS[name])


@dataclass(frozen=True)
class GeneratorConfig:
    """Generator settings. ``split_fractions`` are (train, val, test) fractions of ``num_images``.
    ``preset`` names the statistics the object counts and image size come from (see
    :func:`GeneratorConfig.from_preset`); it is recorded in ``stats.json``."""

    num_images: int
    seed: int = 0
    image_size: int = 64
    questions_per_image: int = 10
    captions_per_image: int = 5
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    min_objects: int = 3
    max_objects: int = 10
    workers: int = 1
    preset: str = DEFAULT_PRESET

    @classmethod
    def from_preset(cls, preset: str, num_images: int, **settings) -> "GeneratorConfig":
        """The preset's object counts and image size, then ``settings`` (seed, splits, ...)."""
        return cls(num_images=num_images, preset=preset, **{**preset_settings(preset), **settings})

    def validate(self) -> None:
        preset_settings(self.preset)
        if self.num_images < 1:
            raise UserError(f"--num-images must be >= 1, got {self.num_images}")
        if self.image_size not in (64, 96, 128):
            raise UserError(f"--image-size must be 64, 96 or 128, got {self.image_size}")
        if len(self.split_fractions) != 3 or min(self.split_fractions) < 0 or abs(sum(self.split_fractions) - 1.0) > 1e-6:
            raise UserError(f"--split-fractions must be three non-negative numbers summing to 1, got {self.split_fractions}")
        if not 1 <= self.min_objects <= self.max_objects <= 10:
            raise UserError(f"object counts must satisfy 1 <= min <= max <= 10, got {self.min_objects}..{self.max_objects}")
        if self.questions_per_image < 0 or self.captions_per_image < 0:
            raise UserError("--questions-per-image and --captions-per-image must be >= 0")


def split_sizes(num_images: int, fractions: tuple[float, float, float]) -> dict[str, int]:
    """Images per split: val and test rounded, the rest to train (every split >= 1 when N >= 3)."""
    val = int(round(num_images * fractions[1]))
    test = int(round(num_images * fractions[2]))
    if num_images >= 3:
        val = max(val, 1) if fractions[1] > 0 else 0
        test = max(test, 1) if fractions[2] > 0 else 0
    return {"train": num_images - val - test, "val": val, "test": test}


def image_filename(split: str, index: int) -> str:
    """CLEVR image file name, e.g. ``CLEVR_val_000042.png``."""
    return f"CLEVR_{split}_{index:06d}.png"


def _one_image(job: tuple[GeneratorConfig, str, int, str]) -> tuple[dict, list[dict], list[str]]:
    """Generate, render and write image ``index`` of ``split``; returns (scene, questions, captions)."""
    config, split, index, image_dir = job
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(_SPLIT_KEY[split], index)))
    scene_config = SceneConfig(image_size=config.image_size, min_objects=config.min_objects, max_objects=config.max_objects)
    scene, image = sample_scene(rng, scene_config)
    filename = image_filename(split, index)
    Path(image_dir, filename).write_bytes(encode_png(image))
    questions = generate_questions(rng, scene, config.questions_per_image)
    captions = generate_captions(rng, scene, config.captions_per_image)
    record = {"image_index": index, "image_filename": filename, "split": split, **scene}
    return record, questions, captions


def write_json(path: Path, payload: dict) -> None:
    """Write compact JSON atomically (temporary file + rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, separators=(",", ":"), ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def is_generated(root: str | Path) -> bool:
    """Whether ``root`` holds this generator's output (its ``stats.json`` says so)."""
    return _made_by_us(Path(root))


def data_preset(clevr_dir: str | Path) -> str | None:
    """The preset a folder made by this project's generator was made with (``stats.json``; sets from
    before presets existed are ``clevr``); None for any other CLEVR-layout folder."""
    if not _made_by_us(Path(clevr_dir)):
        return None
    return str(json.loads((Path(clevr_dir) / "stats.json").read_text(encoding="utf-8")).get("preset", "clevr"))


def _made_by_us(root: Path) -> bool:
    try:
        return json.loads((root / "stats.json").read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def _prepare_output(root: Path, overwrite: bool) -> None:
    """Create the layout. An earlier output of this generator is replaced; anything else that
    is not empty needs ``overwrite``."""
    overwrite = overwrite or _made_by_us(root)
    for split in SPLITS:
        image_dir = root / "images" / split
        if image_dir.is_dir() and any(image_dir.iterdir()):
            if not overwrite:
                raise UserError(f"{image_dir} is not empty; choose another --out or pass --overwrite")
            for stale in image_dir.glob("CLEVR_*.png"):
                stale.unlink()
        image_dir.mkdir(parents=True, exist_ok=True)
    for sub in ("scenes", "questions", "captions"):
        (root / sub).mkdir(parents=True, exist_ok=True)


def generate_clevr(root: str | Path, config: GeneratorConfig, overwrite: bool = False) -> dict:
    """Generate the whole data set under ``root``; returns the statistics also written to
    ``root/stats.json``. An earlier output of this generator in ``root`` is replaced. Raises
    UserError for bad settings or a non-empty output directory of other origin."""
    config.validate()
    root = Path(root)
    try:
        _prepare_output(root, overwrite)
    except OSError as err:
        raise UserError(f"cannot write to {root}: {err.strerror}") from err
    sizes = split_sizes(config.num_images, config.split_fractions)
    info_base = {"version": VERSION, "generator": GENERATOR, "license": "Creative Commons Attribution (CC BY 4.0)", "settings": {k: v for k, v in asdict(config).items() if k != "workers"}}
    questions_by_split: dict[str, list[dict]] = {}
    started = time.perf_counter()
    context = get_context("fork") if config.workers > 1 else None
    pool = context.Pool(config.workers) if context else None
    try:
        for split in SPLITS:
            jobs = [(config, split, i, str(root / "images" / split)) for i in range(sizes[split])]
            results = pool.imap(_one_image, jobs, chunksize=8) if pool else map(_one_image, jobs)
            scenes, questions, captions = [], [], []
            for record, image_questions, image_captions in results:
                scenes.append(record)
                for q in image_questions:
                    questions.append(
                        {
                            "image_index": record["image_index"],
                            "image_filename": record["image_filename"],
                            "question": q["question"],
                            "answer": q["answer"],
                            "program": q["program"],
                            "question_family_index": q["question_family_index"],
                            "split": split,
                            "question_index": len(questions),
                        }
                    )
                captions.append({"image_index": record["image_index"], "image_filename": record["image_filename"], "split": split, "captions": image_captions})
            info = {**info_base, "split": split}
            write_json(root / "scenes" / f"CLEVR_{split}_scenes.json", {"info": info, "scenes": scenes})
            write_json(root / "questions" / f"CLEVR_{split}_questions.json", {"info": info, "questions": questions})
            write_json(root / "captions" / f"CLEVR_{split}_captions.json", {"info": info, "captions": captions})
            questions_by_split[split] = questions
            logger.info("split %s: %d images, %d questions", split, len(scenes), len(questions))
    finally:
        if pool:
            pool.close()
            pool.join()
    logger.info("generated %d images in %.1f s", config.num_images, time.perf_counter() - started)
    stats = {"generator": GENERATOR, "preset": config.preset, "settings": info_base["settings"],
             **question_statistics(questions_by_split)}
    (root / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return stats
