"""``python -m simulator sweep SWEEP.yaml [--address RAY_ADDRESS] [--resume] [--max-parallel N] [--out DIR] [--local]``:
run a grid of scenario variants (see :mod:`simulator.sweep`) on Ray and write one part per point
plus the combined ``metrics.parquet``, ``sweep.yaml`` and ``manifest.json``.

Every grid point is validated before anything is written (a bad key exits 2 naming it). By default
an embedded Ray instance is started on this machine (loopback only, no dashboard) and shut down at
the end; ``--address`` uses an existing cluster; ``--local`` (or ``ray: false`` in the file) runs
the points one after another in this process. Exit status 0 when every point finished, 1 when
some point failed (recorded in its ``parts/<id>.json`` and in the manifest), 2 on bad input.
"""

from __future__ import annotations

import sys

__all__ = ["add_arguments", "main"]


def add_arguments(parser) -> None:
    parser.add_argument("sweep", help="sweep YAML (e.g. scenarios/fig6.yaml)")
    parser.add_argument("--address", default=None, metavar="RAY_ADDRESS",
                        help="connect to this Ray cluster (e.g. auto, or ray://head:10001) instead of starting one here")
    parser.add_argument("--resume", action="store_true",
                        help="continue in the existing output folder; points recorded ok are skipped")
    parser.add_argument("--max-parallel", type=_positive_int, default=None, metavar="N",
                        help="at most N points submitted at a time (default: all; Ray schedules by resources)")
    parser.add_argument("--out", default=None, help="output folder (default: the file's out_dir, else results/<name>)")
    parser.add_argument("--local", action="store_true", help="run the points in this process, without Ray")


def _positive_int(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def main(args) -> int:
    import logging
    import signal

    from simulator.commands.common import in_main_thread, progress_bar, terminate  # SIGTERM ends the sweep like Ctrl-C

    from simulator.errors import Interrupted, UserError
    from simulator.sweep import plan_sweep, run_sweep

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    if args.local and args.address:
        raise UserError("--local and --address exclude each other")
    plan = plan_sweep(args.sweep, out=args.out, resume=args.resume)
    use_ray = not args.local and (plan.sweep.ray or args.address is not None)
    bar = {}

    def on_start(total: int, skipped: int) -> None:
        bar["tqdm"] = progress_bar(total, plan.name, "point", False, initial=skipped)

    def on_point(point, outcome) -> None:
        if outcome["status"] != "ok":
            bar["tqdm"].write(f"point {point.point_id} ({point.label()}) failed: {outcome['error']}", file=sys.stderr)
        bar["tqdm"].update(1)

    previous_sigterm = signal.signal(signal.SIGTERM, terminate) if in_main_thread() else None
    try:
        manifest = run_sweep(plan, use_ray=use_ray, address=args.address, resume=args.resume,
                             max_parallel=args.max_parallel, on_start=on_start, on_point=on_point)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: finished points kept in {plan.directory.path} (--resume goes on)") from None
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if "tqdm" in bar:
            bar["tqdm"].close()
    out = plan.directory.path
    print(f"{manifest['status']}: {manifest['points_ok']}/{manifest['points_total']} points ok "
          f"({manifest['points_skipped']} resumed, {manifest['points_error']} failed), "
          f"{manifest['rows']} rows in {out / 'metrics.parquet'} ({manifest['wall_time_s']:.1f} s)")
    return 0 if manifest["points_error"] == 0 else 1
