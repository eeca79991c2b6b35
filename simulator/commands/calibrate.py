"""``python -m simulator calibrate``: the rate table of a nested codec (``rate_table.json`` in its
folder), which the ``snr`` rate policy reads (:mod:`simulator.adaptation`).

The BS's outputs on a calibration set (VQA answers and captions of CLEVR-like images generated with
:data:`simulator.assets.CALIBRATION_DATA_SEED`, a seed neither training nor the test set uses, plus the sentiment
corpus's validation sentences when it is prepared) are decoded through AWGN at every SNR of the grid
and every rate; the table holds the share of tokens recovered.
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
    parser.add_argument("--out", default=None, help="table file (default: CHECKPOINT/rate_table.json)")


def main(args) -> int:
    import math
    from pathlib import Path

    import torch

    from simulator.adaptation import RATE_TABLE_FILE, RateTable, recovery_probability
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
    rates = model.config.rates
    if len(rates) == 1:
        raise UserError(f"{path}: the codec serves one rate (c = {rates[0]}); train it with stages.joint.rates")
    preset = args.preset or SHIPPED_DATA_PRESET
    if args.data:
        root = Path(args.data)
        if not (root / "questions").is_dir():
            raise UserError(f"--data {root}: not a CLEVR-layout folder (no questions/)")
    else:
        images = max(10, math.ceil(args.num_samples / 5))
        root = eval_set_dir(preset, CALIBRATION_DATA_SEED, images)
        ensure_eval_set(root, CALIBRATION_DATA_SEED, images, preset=preset)
    samples = load_eval_samples("vqa", args.num_samples, root) + load_eval_samples("caption", args.num_samples, root)
    used = ["vqa", "caption"]
    try:
        samples += load_eval_samples("classify", args.num_samples, split="val")
        used.append("classify (val)")
    except UserError:
        pass  # no prepared sentiment corpus: calibrate on the image tasks
    hidden, tokens = _outputs(model, samples)
    grid = [round(low + i * step, 6) for i in range(int(math.floor((high - low) / step + 1e-9)) + 1)]
    recovery = []
    for snr in grid:
        snr_db = torch.full((tokens.shape[0],), snr)
        recovery.append([round(float(v), 5) for v in recovery_probability(model, hidden, tokens, snr_db, rates,
                                                                            args.draws).mean(0)])
    source = {"channel": "awgn (MMSE)", "tasks": used, "samples_per_task": args.num_samples,
              "tokens": int(tokens.shape[0]), "draws": args.draws,
              **({"data": str(root)} if args.data else {"preset": preset, "data_seed": CALIBRATION_DATA_SEED})}
    out = Path(args.out) if args.out else path / RATE_TABLE_FILE
    try:
        RateTable(grid, rates, recovery, source).save(out)
    except OSError as err:
        raise UserError(f"cannot write {out}: {err}") from None
    print(f"rate table: {out} ({tokens.shape[0]} tokens, {len(grid)} SNRs x {len(rates)} rates)")
    return 0


def _outputs(model, samples):
    """The BS's semantic vectors ``[N, d]`` and tokens ``[N]`` of every output token of ``samples``."""
    import torch

    from simulator.evaluation import transmit

    sent = transmit(model, samples)
    return (torch.cat([t.hidden[t.token_mask] for t in sent]), torch.cat([t.tokens[t.token_mask] for t in sent]))
