"""``python -m simulator eval``: task accuracy of a codec versus SNR through one channel."""

from __future__ import annotations

import json
import math

__all__ = ["add_arguments", "main"]


def _snr(text: str) -> float:
    import argparse

    if text.lower() in ("inf", "none"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"SNR must be a number in dB, 'inf' or 'none', got {text!r}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError("SNR must not be nan")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", default=None, help="codec folder (default: the shipped tiny checkpoint)")
    parser.add_argument("--task", required=True, choices=("vqa", "caption", "classify"))
    parser.add_argument("--channel", default="awgn", choices=("awgn", "rayleigh"))
    parser.add_argument("--snr-db", nargs="+", type=_snr, default=[math.inf], metavar="SNR",
                        help="Es/N0 in dB; 'inf' or 'none' = noise-free (default)")
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--quantize", default="none", choices=("none", "int8", "int8_dynamic"),
                        help="int8: the codec with int8 weights (torchao); int8_dynamic: int8 activations too; "
                             "as model.quantize in a scenario")
    parser.add_argument("--rate", type=int, default=None, metavar="K",
                        help="send each token as the first K of its c symbols (a codec trained with several rates)")
    parser.add_argument("--split", default="val", choices=("val", "test"),
                        help="val (default): validation data, for every choice; test: the test set, to report. "
                             "Without --data the images are generated in ~/.cache/m4sc with seed 24680 (val) or "
                             "12345 (test); the sentences are the corpus' val or test split")
    parser.add_argument("--data", default=None, help="CLEVR-layout folder: its --split split (default: the generated set)")
    parser.add_argument("--preset", default=None, choices=("clevr", "clevr_small"),
                        help="statistics of the generated set (default: those the shipped codec was trained on)")
    parser.add_argument("--text-data", default=None, help="sentiment corpus folder (default: ~/.cache/m4sc/text)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the channel draws")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda[:N] or auto (CUDA when present)")
    parser.add_argument("--wrong-image", action="store_true",
                        help="give each question another scene's image (the next distinct image of the set): what "
                             "the codec answers without the right image")
    parser.add_argument("--json", action="store_true", help="print JSON only: one object per SNR")


def main(args) -> int:
    from simulator.errors import UserError

    if args.num_samples < 1:
        raise UserError(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    import torch

    from simulator.device import resolve_device
    from simulator.evaluation import default_checkpoint, evaluate, load_eval_samples
    from simulator.models.checkpoint import CheckpointError, load_codec

    device = resolve_device(args.device, "--device")
    path = args.checkpoint or default_checkpoint()
    try:
        model = load_codec(path, device=str(device), inference=True)
    except CheckpointError as err:
        raise UserError(str(err)) from None
    from simulator.models.quantize import quantize_codec

    quantize_codec(model, args.quantize)
    torch.manual_seed(args.seed)
    from simulator.assets import SHIPPED_DATA_PRESET

    if args.preset is not None and args.data is not None:
        raise UserError("--preset chooses the generated test set; it cannot apply to --data")
    samples = load_eval_samples(args.task, args.num_samples, args.data, args.split, args.text_data,
                                preset=args.preset or SHIPPED_DATA_PRESET)
    if args.wrong_image:
        from simulator.evaluation import with_other_images

        samples = with_other_images(samples)
    rows = evaluate(model, samples, args.channel, list(args.snr_db), seed=args.seed, batch_size=args.batch_size,
                    rate=args.rate)
    for row in rows:
        row["split"] = args.split
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    metric = "accuracy" if args.task != "caption" else "bleu4"
    swapped = " (each with another scene's image)" if args.wrong_image else ""
    print(f"{args.task} on {len(samples)} {args.split} samples{swapped}, checkpoint {path}")
    print(f"{'channel':>9} {'snr_db':>7} {metric:>9} {metric + '_noiseless':>19} {'symbols/sample':>15}")
    for row in rows:
        snr = 'inf' if row['snr_db'] is None else row['snr_db']
        print(f"{row['channel']:>9} {snr:>7} {row[metric]:>9.4f} {row[metric + '_noiseless']:>19.4f} "
              f"{row['symbols_per_sample']:>15.1f}")
    return 0
