"""What ships with the package and where generated data lives: the trained checkpoints, the data
preset they were trained on, and the test-only eval sets (seed, cache folder, generation).

A leaf module (no torch): the scenario, the runner, ``eval`` and ``calibrate`` all take these paths
from here.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CHECKPOINTS_DIR", "SHIPPED_CHECKPOINT", "SHIPPED_BASELINES", "SHIPPED_DATA_PRESET", "EVAL_DATA_SEED",
           "VALIDATION_DATA_SEED", "CALIBRATION_DATA_SEED", "SPLIT_DATA_SEEDS", "eval_set_dir", "ensure_eval_set",
           "default_eval_clevr_dir"]

#: Folder of the trained tiny checkpoints that ship with the package (put there by training).
CHECKPOINTS_DIR = Path(__file__).resolve().parent / "checkpoints"
SHIPPED_CHECKPOINT = CHECKPOINTS_DIR / "m4sc_tiny"
#: Baseline kind -> its shipped checkpoint folder.
SHIPPED_BASELINES = {"deepsc": CHECKPOINTS_DIR / "deepsc_tiny", "deepsc_vqa": CHECKPOINTS_DIR / "deepsc_vqa_tiny"}
#: The data preset (simulator.data.clevr_generator.PRESETS) the shipped codecs were trained on: what
#: generated eval sets default to, so a scenario scores a codec on the statistics it learnt.
SHIPPED_DATA_PRESET = "clevr_small"
#: Test data is generated with a seed that training never uses (a training config with it is refused).
EVAL_DATA_SEED = 12345
#: Validation data: images neither training (seed 0) nor the test set uses. Every choice (recipe
#: settings, rate tables, a baseline's tuning) is made on it; the test set only reports.
VALIDATION_DATA_SEED = 24680
#: Rate tables are calibrated on the validation images.
CALIBRATION_DATA_SEED = VALIDATION_DATA_SEED
#: The generator seed of each generated evaluation split.
SPLIT_DATA_SEEDS = {"val": VALIDATION_DATA_SEED, "test": EVAL_DATA_SEED}


def eval_set_dir(preset: str, seed: int, num_images: int) -> Path:
    """Where a generated eval set lives in the user cache: ``~/.cache/m4sc/clevr-eval-[<preset>-]<seed>-<N>``
    (the ``clevr`` preset keeps the name sets had before presets existed)."""
    name = f"{seed}-{num_images}" if preset == "clevr" else f"{preset}-{seed}-{num_images}"
    return Path.home() / ".cache" / "m4sc" / f"clevr-eval-{name}"


def ensure_eval_set(root: Path, seed: int, num_images: int, own_cache: bool = True, preset: str = "clevr") -> None:
    """Generate a test-only CLEVR-like set of ``preset`` into ``root`` unless it is there already.

    Safe when several processes ask at once (sweep workers on a fresh machine): each writes a
    private temporary folder and renames it into place; the first rename wins and the others
    discard theirs, so a reader never sees a half-written set. A partial folder in our own cache
    (``own_cache``) is replaced; a user's folder (``data.cache_dir``) is filled in place.
    """
    import os
    import shutil
    import uuid

    from simulator.data.clevr_generator import GeneratorConfig, generate_clevr

    marker = root / "questions" / "CLEVR_test_questions.json"
    if marker.is_file():
        return
    config = GeneratorConfig.from_preset(preset, num_images, seed=seed, split_fractions=(0.0, 0.0, 1.0))
    if root.exists() and not own_cache:
        generate_clevr(root, config)
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f".{root.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        generate_clevr(tmp, config, overwrite=True)
        if root.exists() and not marker.is_file():
            shutil.rmtree(root, ignore_errors=True)  # a partial set left by an older version or a kill
        try:
            os.rename(tmp, root)
        except OSError:
            if not marker.is_file():  # not another process's complete set: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def default_eval_clevr_dir(num_images: int = 300, preset: str = SHIPPED_DATA_PRESET, split: str = "test") -> Path:
    """A CLEVR-like evaluation set of ``preset`` generated into the user cache (made once): ``split``
    "test" with :data:`EVAL_DATA_SEED`, "val" with :data:`VALIDATION_DATA_SEED`. Either way the
    folder's own split is ``test`` (the generator puts every image there)."""
    if split not in SPLIT_DATA_SEEDS:
        raise ValueError(f"split must be one of {', '.join(SPLIT_DATA_SEEDS)}, got {split!r}")
    seed = SPLIT_DATA_SEEDS[split]
    root = eval_set_dir(preset, seed, num_images)
    ensure_eval_set(root, seed, num_images, preset=preset)
    return root
