"""``python -m simulator bench``: measurements on this machine (speed targets live here, not in tests).

Sections:
- ``pipeline``: the M4SC link (transmitter, comparator, channel, receiver, bookkeeping; see
  :mod:`simulator.benchmark`) with the shipped codec for 1, 8, 64 and 256 users, one VQA task
  each; best of ``repeats`` passes after a warm-up. Top-level keys: ``throughput_samples_per_s``
  (8 users), ``per_user_s`` (total seconds / users, keyed "1", "8", "64", "256"),
  ``flop_bound_fraction`` (64 users: FLOP-bound time / measured time), ``comparator_share_256``,
  ``peak_mem_mb_256`` (peak RSS of a fresh process running the 256-user pass);
- ``quantization``: the 8-user pass, its accuracy and the codec's weight bytes in fp32 and in each
  int8 mode (``model.quantize``, :mod:`simulator.models.quantize`): ``weight_ratio``, ``speedup``;
- ``channels``: complex symbols per second through AWGN, block Rayleigh and TDL-OFDM (8 users);
- ``help_s``: start-up time of ``python -m simulator --help``.
``--channels`` runs the channel section only.

``--transmitter`` runs only the BS transmitter (vision + projector + LLM generation + channel
encoder) of a profile (``--profile paper``: SigLIP-so400m + Gemma-2-2B shapes with random weights,
since no pretrained weights install offline) at several batch sizes, with its FLOP bound (FLOPs
run / measured matmul rate in the same dtype) and weight-streaming bound (weight bytes read per
decode step / measured copy bandwidth; small-batch decoding of a 2.6 B-parameter model would be
memory-bound if kernel launches were free). ``--device`` picks the device once, here, for every
section.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

__all__ = ["add_arguments", "main", "measure_help_seconds", "measure_channels"]

BENCH_CHANNELS = ("awgn", "rayleigh", "tdl")


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--channels", action="store_true", help="only the channel-throughput section")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier, faster)")
    parser.add_argument("--num-users", type=int, default=8, help="users for the channel section (default 8)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--transmitter", action="store_true", help="only the transmitter section (see --profile)")
    parser.add_argument("--profile", default="paper", choices=("paper", "tiny"),
                        help="transmitter section: codec shapes (default paper, random weights; tiny = shipped codec)")
    parser.add_argument("--checkpoint", default=None, help="transmitter section: a codec folder instead of --profile")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"),
                        help="transmitter section: weight dtype (auto: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--batch-sizes", default="1,8,64", help="transmitter section: comma-separated (default 1,8,64)")
    parser.add_argument("--training", default=None, metavar="RECIPE",
                        help="only the training cost of a recipe: seconds per sample of each stage in fp32 and bf16")
    parser.add_argument("--stages", default=None, help="with --training: comma-separated stages (default: all but "
                        "joint and rates, whose cost is the token pool's or the channel codec's)")
    parser.add_argument("--steps", type=int, default=5, help="with --training: timed steps per stage after one "
                        "warm-up step (default 5)")


def measure_help_seconds(repeats: int = 3) -> float:
    """Best-of-``repeats`` wall time of ``python -m simulator --help`` in a fresh interpreter (s)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "simulator", "--help"], check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def measure_channels(num_users: int, quick: bool) -> dict:
    """Complex symbols per second through each model of :data:`BENCH_CHANNELS` (all users counted)."""
    from channels.registry import channel_throughput

    repeats = 2 if quick else 5
    results = {}
    for name in BENCH_CHANNELS:
        rate = channel_throughput(name, num_users=num_users, repeats=repeats)
        results[name] = {"symbols_per_s": rate, "unit": "complex symbols/s", "num_users": num_users}
    return results


USER_COUNTS = (1, 8, 64, 256)
_PEAK_MEMORY_SCRIPT = (
    "import resource, sys\n"
    "from simulator.benchmark import PipelineBench\n"
    "PipelineBench(num_tasks=256).run(256)\n"
    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
)


def peak_memory_mb(script: str = _PEAK_MEMORY_SCRIPT) -> float:
    """Peak resident memory (MB) of a fresh interpreter running ``script`` (Linux reports KiB)."""
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def measure_pipeline(quick: bool, device="cpu") -> dict:
    """The pipeline section and its top-level figures."""
    from simulator.benchmark import PipelineBench, matmul_flops_per_s

    bench = PipelineBench(num_tasks=256, device=device)
    bench.run(8)  # warm-up: lazy imports, allocator, first-call kernels
    repeats = 1 if quick else 3
    passes = {}
    for users in USER_COUNTS:
        runs = [bench.run(users) for _ in range(repeats if users <= 64 else 1)]
        passes[str(users)] = min(runs, key=lambda r: r["total_s"])
    flops = bench.forward_flops(64)
    machine = matmul_flops_per_s(device=device)
    bound_s = flops / machine
    quantization = measure_quantization(bench, passes["8"], repeats)
    return {
        "quantization": quantization,
        "throughput_samples_per_s": 8 / passes["8"]["total_s"],
        "per_user_s": {k: v["total_s"] / int(k) for k, v in passes.items()},
        "flop_bound_fraction": bound_s / passes["64"]["total_s"],
        "comparator_share_256": passes["256"]["comparator_s"] / passes["256"]["total_s"],
        "peak_mem_mb_256": peak_memory_mb(),
        "pipeline": {
            "passes": passes,
            "forward_gflop_64": flops / 1e9,
            "matmul_gflop_per_s": machine / 1e9,
            "flop_bound_s_64": bound_s,
            "units": "seconds per pass (wall clock), accuracy = VQA exact match of that pass",
        },
    }


def measure_quantization(bench, fp32_pass: dict, repeats: int) -> dict:
    """fp32 vs each int8 mode of :mod:`simulator.models.quantize`: the 8-user pass (best of
    ``repeats``), its accuracy and the codec's weight bytes. Leaves ``bench`` on its fp32 codec."""
    import copy

    from simulator.models.quantize import QUANTIZATION_MODES, quantize_codec, weight_bytes

    fp32_model = bench.model
    report = {"fp32": {"pass_8_users_s": fp32_pass["total_s"], "weight_bytes": weight_bytes(fp32_model),
                       "accuracy": fp32_pass["accuracy"]}}
    try:
        for mode in QUANTIZATION_MODES[1:]:
            bench.use_model(quantize_codec(copy.deepcopy(fp32_model), mode))
            bench.run(8)  # warm-up of the int8 kernels
            best = min((bench.run(8) for _ in range(repeats)), key=lambda r: r["total_s"])
            report[mode] = {"pass_8_users_s": best["total_s"], "weight_bytes": weight_bytes(bench.model),
                            "accuracy": best["accuracy"],
                            "weight_ratio": weight_bytes(bench.model) / report["fp32"]["weight_bytes"],
                            "speedup": fp32_pass["total_s"] / best["total_s"]}
    finally:
        bench.use_model(fp32_model)
    return report


def measure_transmitter(profile: str, checkpoint, device, dtype, batch_sizes: list[int], quick: bool) -> dict:
    """The transmitter section: one row per batch size, plus the machine's two ceilings."""
    import torch

    from simulator.benchmark import TransmitterBench, copy_bytes_per_s, matmul_flops_per_s

    bench = TransmitterBench(profile, checkpoint, device=device, dtype=dtype)
    on_gpu = torch.device(device).type == "cuda"
    peak_flops = matmul_flops_per_s(size=8192 if on_gpu else 1024, device=device, dtype=dtype)
    bandwidth = copy_bytes_per_s(num_bytes=(1 << 31) if on_gpu else (1 << 28), device=device)
    weight_bytes = bench.parameter_bytes()
    rows = {}
    for batch in batch_sizes:
        row = bench.run(batch, repeats=1 if quick else 3)
        row["flop_bound_fraction"] = row["flops"] / peak_flops / row["seconds"]
        row["weight_stream_bound_fraction"] = weight_bytes * row["new_tokens"] / bandwidth / row["seconds"]
        rows[str(batch)] = row
    return {
        "profile": "checkpoint" if checkpoint else profile,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_gpu else "cpu",
        "dtype": str(dtype).replace("torch.", ""),
        "parameters": sum(p.numel() for p in bench.model.parameters()),
        "weight_bytes": weight_bytes,
        "matmul_flop_per_s": peak_flops,
        "copy_bytes_per_s": bandwidth,
        "batches": rows,
        "units": "seconds per pass (median), flops per pass, samples/s, generated tokens/s, MB",
    }


def main(args) -> int:
    from simulator.errors import UserError

    if args.num_users < 1:
        raise UserError(f"--num-users must be >= 1, got {args.num_users}")
    try:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        raise UserError(f"--batch-sizes: expected comma-separated integers, got {args.batch_sizes!r}") from None
    if any(b < 1 for b in batch_sizes):
        raise UserError(f"--batch-sizes: each must be >= 1, got {args.batch_sizes!r}")
    from simulator.device import resolve_device

    device = resolve_device(args.device, "--device")
    if args.training:
        return _training(args)
    if args.transmitter:
        import torch

        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(
            args.dtype, torch.bfloat16 if device.type == "cuda" else torch.float32)
        report = {"transmitter": measure_transmitter(args.profile, args.checkpoint, device, dtype, batch_sizes, args.quick)}
        if args.json:
            print(json.dumps(report, indent=2))
            return 0
        section = report["transmitter"]
        print(f"transmitter, {section['profile']} profile, {section['parameters'] / 1e6:.0f} M parameters, "
              f"{section['dtype']} on {section['device_name']}, {section['batches'][str(batch_sizes[0])]['new_tokens']} "
              "new tokens per sample:")
        print(f"  {'batch':>6} {'s/pass':>8} {'samples/s':>10} {'tokens/s':>10} {'FLOP bound':>11} {'weight bound':>13}")
        for batch, row in section["batches"].items():
            print(f"  {batch:>6} {row['seconds']:8.3f} {row['samples_per_s']:10.1f} {row['tokens_per_s']:10.0f} "
                  f"{100 * row['flop_bound_fraction']:10.1f}% {100 * row['weight_stream_bound_fraction']:12.1f}%")
        print(f"  machine: {section['matmul_flop_per_s'] / 1e12:.1f} TFLOP/s matmul ({section['dtype']}), "
              f"{section['copy_bytes_per_s'] / 1e9:.0f} GB/s copy")
        return 0
    report: dict = {"unit_note": "rates are wall-clock on this machine; SNR irrelevant to speed", "device": str(device)}
    if not args.channels:
        report.update(measure_pipeline(args.quick, device))
    report["channels"] = measure_channels(args.num_users, args.quick)
    if not args.channels:
        report["help_s"] = measure_help_seconds(1 if args.quick else 3)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if "pipeline" in report:
        print("M4SC pipeline (shipped codec, one VQA task per user), seconds per pass:")
        print(f"  {'users':>6} {'total':>8} {'per user':>9} {'transmit':>9} {'compare':>8} {'channel':>8} {'receive':>8}")
        for users, row in report["pipeline"]["passes"].items():
            print(f"  {users:>6} {row['total_s']:8.3f} {row['total_s'] / int(users):9.4f} {row['transmitter_s']:9.3f} "
                  f"{row['comparator_s']:8.4f} {row['channel_s']:8.4f} {row['receiver_s']:8.4f}")
        print(f"  throughput (8 users): {report['throughput_samples_per_s']:.1f} task-samples/s")
        print(f"  FLOP bound at 64 users: {report['pipeline']['flop_bound_s_64']:.3f} s "
              f"({report['pipeline']['forward_gflop_64']:.1f} GFLOP at {report['pipeline']['matmul_gflop_per_s']:.0f} GFLOP/s)"
              f" = {100 * report['flop_bound_fraction']:.1f}% of the measured time")
        print(f"  comparator share at 256 users: {100 * report['comparator_share_256']:.2f}%;"
              f" peak memory at 256 users: {report['peak_mem_mb_256']:.0f} MB")
        quantized = report["quantization"]
        fp32 = quantized["fp32"]
        for mode, row in quantized.items():
            if mode != "fp32":
                print(f"  {mode}: weights {row['weight_bytes'] / 1e6:.2f} MB vs fp32 {fp32['weight_bytes'] / 1e6:.2f} MB "
                      f"({row['weight_ratio']:.2f}x); 8-user pass {row['pass_8_users_s']:.3f} s vs "
                      f"{fp32['pass_8_users_s']:.3f} s ({row['speedup']:.2f}x faster)")
    print(f"channel throughput, {args.num_users} users (forward, inference mode):")
    for name, row in report["channels"].items():
        print(f"  {name:<10} {row['symbols_per_s'] / 1e6:8.2f} M complex symbols/s")
    if "help_s" in report:
        print(f"python -m simulator --help: {report['help_s']:.2f} s")
    return 0


def _training(args) -> int:
    from simulator.benchmark import measure_training
    from simulator.config_io import load_yaml_config
    from simulator.errors import UserError
    from simulator.training.config import TrainConfig

    if args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    config = load_yaml_config(args.training, TrainConfig, [])
    present = config.stage_names("all")
    stages = args.stages.split(",") if args.stages else [s for s in present if s not in ("joint", "rates")]
    unknown = [s for s in stages if s not in present]
    if unknown:
        raise UserError(f"--stages: {unknown[0]!r} is not a stage of {args.training} (has {', '.join(present)})")
    report = {"training": measure_training(config, stages, args.steps)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"training cost of {args.training}, {args.steps} timed steps per stage (s per sample):")
    print(f"  {'stage':<10} {'fp32':>8} {'bf16':>8} {'speed-up':>9}  bf16 runs as")
    for name, row in report["training"].items():
        print(f"  {name:<10} {row['fp32']['s_per_sample']:8.4f} {row['bf16']['s_per_sample']:8.4f} "
              f"{row.get('bf16_speedup', float('nan')):8.2f}x  {row['bf16']['runs_as']}")
    return 0
