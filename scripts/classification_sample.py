"""How much of the sentiment test split a scenario's classification points draw, and what M4SC and
DeepSC score on exactly those draws against the whole split (base-station output, no channel).

    python scripts/classification_sample.py [--sweep scenarios/fig5.yaml] [--m4sc DIR] [--deepsc DIR]

Snapshot traffic gives each snapshot's shared task to several users, so some sentences count many
times: the effective number of sentences is (sum of counts)^2 / sum of counts^2. The difference
M4SC - DeepSC is paired (same sentences) and weighted by the counts; its standard error says how
large a gap the draws can resolve. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import collections
import math
from pathlib import Path

import torch

from simulator.baselines.deepsc import load_deepsc
from simulator.evaluation import DEFAULT_CHECKPOINT, load_eval_samples, transmit
from simulator.models.checkpoint import load_codec
from simulator.scenario import load_scenario
from simulator.sweep.grid import expand_grid, load_sweep, resolve_base
from simulator.workload import TaskPool, resolve_clevr_dir, snapshot_rounds


def drawn_sentences(sweep_path: str) -> tuple[collections.Counter, str, list[int]]:
    """Counts of each test-sentence index among the classification tasks of the sweep's seeds (the
    draws do not depend on the SNR), the text split and the seeds."""
    from simulator.data.sentiment import DEFAULT_TEXT_DIR

    sweep = load_sweep(sweep_path)
    base = resolve_base(sweep, sweep_path)
    scenarios = {}
    for point in expand_grid(sweep):
        scenario = load_scenario(base, point.override_strings())
        scenarios.setdefault(scenario.seed, scenario)
    counts = collections.Counter()
    for seed, scenario in sorted(scenarios.items()):
        kinds = scenario.traffic.active_tasks()
        if "classify" not in kinds:
            raise SystemExit(f"{sweep_path}: no classification traffic")
        data = scenario.data
        text_dir = Path(data.text_dir).expanduser() if data.text_dir else Path(DEFAULT_TEXT_DIR)
        clevr_dir = resolve_clevr_dir(data, data.split) if {"vqa", "caption"} & set(kinds) else None
        pool = TaskPool.from_sources(kinds, clevr_dir, data.split, text_dir, data.text_subset, data.text_split, None)
        for arrivals in snapshot_rounds(scenario.traffic, pool, scenario.num_users, seed):
            counts.update(int(a.task.task_id.split("/")[1]) for a in arrivals if a.task.kind == "classify")
    return counts, data.text_split, sorted(scenarios)


def paired_difference(first: list[bool], second: list[bool], weights: dict[int, int]) -> tuple[float, float, float]:
    """``(mean, standard error, effective count)`` of ``first - second`` (correct = 1) weighted by ``weights``."""
    total = sum(weights.values())
    diff = {i: int(first[i]) - int(second[i]) for i in weights}
    mean = sum(w * diff[i] for i, w in weights.items()) / total
    error = math.sqrt(sum(w * w * (diff[i] - mean) ** 2 for i, w in weights.items())) / total
    return mean, error, total ** 2 / sum(w * w for w in weights.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="scenarios/fig5.yaml", help="sweep file (its grid's seeds)")
    parser.add_argument("--m4sc", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--deepsc", default=str(DEFAULT_CHECKPOINT.parent / "deepsc_tiny"))
    args = parser.parse_args()
    counts, split, seeds = drawn_sentences(args.sweep)
    samples = load_eval_samples("classify", 10**9, split=split)
    texts = [s.input_text for s in samples]
    gold = [s.references[0] for s in samples]
    model = load_codec(args.m4sc, inference=True)
    m4sc = [t.strip() == g for t, g in zip((x for sent in transmit(model, samples)
                                            for x in model.decode_text(sent.tokens, sent.token_mask)), gold)]
    deepsc = [p == g for p, g in zip(load_deepsc(args.deepsc).eval().classify(texts), gold)]
    print(f"{args.sweep}, seeds {seeds}: {sum(counts.values())} classification tasks, {len(counts)} of "
          f"{len(samples)} {split} sentences, most repeated {counts.most_common(1)[0][1]} times")
    for name, weights in (("the scenario's draws", counts), (f"the whole {split} split", dict.fromkeys(range(len(samples)), 1))):
        total = sum(weights.values())
        score = {label: sum(w * correct[i] for i, w in weights.items()) / total
                 for label, correct in (("M4SC", m4sc), ("DeepSC", deepsc))}
        mean, error, effective = paired_difference(m4sc, deepsc, weights)
        print(f"on {name} ({effective:.0f} effective sentences): M4SC {score['M4SC']:.3f}, DeepSC {score['DeepSC']:.3f}, "
              f"M4SC - DeepSC {mean:+.3f} +- {error:.3f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
