"""``python -m simulator calibrate``: the rate table of a nested codec (``rate_table.json`` in its
folder), which the ``snr`` rate policy reads (:mod:`simulator.adaptation`).

The BS's outputs on a calibration set (VQA answers and captions of CLEVR-like images generated with
:data:`simulator.assets.CALIBRATION_DATA_SEED`, a seed neither training nor the test set uses, plus the sentiment
corpus's validation sentences when it is prepared) are decoded through AWGN at every SNR of the grid
and every rate (the codec's, then the repetition rates above ``c`` of ``adaptation.repeat``); the
table holds the share of tokens recovered, over all tokens and per task (the ``snr`` policy reads
the row of the task a user asked for). Recovered means decoded to the BS's token, or with
``--reference full-rate`` to what the full rate decodes without noise, the reference the
``importance`` policy keeps: a codec whose stage 3 learnt to correct the BS (the Gemma codec
decodes the BS's VQA answer token noise-free only 44% of the time) has a full rate that "recovers"
few BS tokens, and any ``k`` that recovers as few looks as good as ``c``.
"""

from __future__ import annotations

__all__ = ["add_arguments", "main"]


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", default=None, help="codec folder (default: the shipped tiny checkpoint)")
    parser.add_argument("--num-samples", type=int, default=200, help="samples per task (default 200)")
    parser.add_argument("--snr-db", nargs=3, type=float, default=[-10.0, 30.0, 1.0], metavar=("LOW", "HIGH", "STEP"),
                        help="SNR grid in dB (default -10 30 1)")
    parser.add_argument("--draws", type=int, default=16, help="noise realisations per token (default 16)")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="a CLEVR-layout folder to calibrate on, its test split (default: images generated "
                             "with the calibration seed)")
    parser.add_argument("--preset", default=None, choices=("clevr", "clevr_small"),
                        help="statistics of the generated calibration images (default: the shipped codec's)")
    parser.add_argument("--reference", default="bs", choices=("bs", "full-rate"),
                        help="what a token must decode to: the BS's token (default) or what the full rate decodes "
                             "without noise (for a codec whose full-rate decode often differs from the BS's token)")
    parser.add_argument("--out", default=None, help="table file (default: CHECKPOINT/rate_table.json)")


def main(args) -> int:
    import math
    from pathlib import Path

    import torch

    from simulator.adaptation import RATE_TABLE_FILE, RateTable, full_rate_tokens, recovery_probability, repetition_rates
    from simulator.assets import CALIBRATION_DATA_SEED, SHIPPED_DATA_PRESET, ensure_eval_set, eval_set_dir
    from simulator.errors import UserError
    from simulator.evaluation import default_checkpoint, load_eval_samples
    from simulator.models.checkpoint import CheckpointError, load_codec

    low, high, step = args.snr_db
    if not (math.isfinite(low) and math.isfinite(high) and math.isfinite(step)) or step <= 0 or high < low:
        raise UserError("--snr-db LOW HIGH STEP: finite numbers with LOW <= HIGH and STEP > 0")
    if args.num_samples < 1 or args.draws < 1:
        raise UserError("--num-samples and --draws must be >= 1")
    path = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    try:
        model = load_codec(path, inference=True)
    except CheckpointError as err:
        raise UserError(str(err)) from None
    if len(model.config.rates) == 1:
        raise UserError(f"{path}: the codec serves one rate (c = {model.config.rates[0]}); train it with stages.joint.rates")
    rates = model.config.rates + repetition_rates(model.config.channel_symbols_per_token)
    preset = args.preset or SHIPPED_DATA_PRESET
    if args.data:
        root = Path(args.data)
        if not (root / "questions").is_dir():
            raise UserError(f"--data {root}: not a CLEVR-layout folder (no questions/)")
    else:
        images = max(10, math.ceil(args.num_samples / 5))
        root = eval_set_dir(preset, CALIBRATION_DATA_SEED, images)
        ensure_eval_set(root, CALIBRATION_DATA_SEED, images, preset=preset)
    samples = {task: load_eval_samples(task, args.num_samples, root) for task in ("vqa", "caption")}
    used = ["vqa", "caption"]
    try:
        samples["classify"] = load_eval_samples("classify", args.num_samples, split="val")
        used.append("classify (val)")
    except UserError:
        pass  # no prepared sentiment corpus: calibrate on the image tasks
    outputs = {task: _outputs(model, task_samples) for task, task_samples in samples.items()}
    if args.reference == "full-rate":
        outputs = {task: (hidden, full_rate_tokens(model, hidden)) for task, (hidden, _) in outputs.items()}
    counts = {task: int(tokens.shape[0]) for task, (_, tokens) in outputs.items()}
    grid = [round(low + i * step, 6) for i in range(int(math.floor((high - low) / step + 1e-9)) + 1)]
    by_task = {task: [] for task in outputs}
    recovery = []
    for snr in grid:
        total = torch.zeros(len(rates))
        for task, (hidden, tokens) in outputs.items():
            snr_db = torch.full((tokens.shape[0],), snr)
            per_token = recovery_probability(model, hidden, tokens, snr_db, rates, args.draws)
            by_task[task].append([round(float(v), 5) for v in per_token.mean(0)])
            total += per_token.sum(0)
        recovery.append([round(float(v), 5) for v in total / sum(counts.values())])
    source = {"channel": "awgn (MMSE)", "tasks": used, "reference": args.reference, "samples_per_task": args.num_samples,
              "tokens": sum(counts.values()), "tokens_per_task": counts, "draws": args.draws,
              **({"data": str(root)} if args.data else {"preset": preset, "data_seed": CALIBRATION_DATA_SEED})}
    out = Path(args.out) if args.out else path / RATE_TABLE_FILE
    try:
        RateTable(grid, rates, recovery, source, by_task).save(out)
    except OSError as err:
        raise UserError(f"cannot write {out}: {err}") from None
    print(f"rate table: {out} ({sum(counts.values())} tokens, {len(grid)} SNRs x {len(rates)} rates, "
          f"per task: {', '.join(outputs)})")
    return 0


def _outputs(model, samples):
    """The BS's semantic vectors ``[N, d]`` and tokens ``[N]`` of every output token of ``samples``."""
    import torch

    from simulator.evaluation import transmit

    sent = transmit(model, samples)
    return (torch.cat([t.hidden[t.token_mask] for t in sent]), torch.cat([t.tokens[t.token_mask] for t in sent]))
