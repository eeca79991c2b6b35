"""``python -m simulator run SCENARIO.yaml [--out DIR] [--set key=value ...] [--json]``: simulate a
scenario (see :mod:`simulator.scenario`) and write ``metrics.parquet``, ``config.yaml`` and
``manifest.json`` (see :mod:`simulator.results`).

Everything that can be wrong with the input (schema, checkpoint, channel parameters, data, output
folder) is checked before the output folder is created. Ctrl-C keeps the points already finished
in a valid ``metrics.parquet`` and marks the manifest ``interrupted``.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from pathlib import Path

from simulator.errors import Interrupted

__all__ = ["add_arguments", "main", "SUMMARY_COLUMNS"]

SUMMARY_COLUMNS = ["system", "task", "snr_db", "sharing", "threshold", "accuracy", "bleu4", "sharing_ratio",
                   "bytes_total", "latency_mean_s"]


def add_arguments(parser) -> None:
    parser.add_argument("scenario", help="scenario YAML (e.g. scenarios/vqa_8users.yaml)")
    parser.add_argument("--out", default=None,
                        help="output folder (default results/<scenario name>-<timestamp>); must not exist or be empty")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario value, e.g. --set num_users=4 --set snr_db=[0,10] (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the summary rows as JSON only")


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _json_safe(value.item())
    return value


def _print_summary(frame, out: Path, status: str) -> None:
    import pandas as pd

    if frame.empty:
        print(f"no finished points ({status}); results in {out}")
        return
    columns = list(SUMMARY_COLUMNS)
    if frame["tx_power_dbm"].notna().any():  # drop placement: the sweep is the transmit power
        columns.insert(columns.index("snr_db"), "tx_power_dbm")
    table = frame[columns].copy()
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 500):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-"))
    print(f"{status}: {len(frame)} rows in {out}")


def main(args) -> int:
    from simulator.commands.common import close_progress, in_main_thread, progress_bar, terminate
    from simulator.runner import RunSetup

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    setup = RunSetup(args.scenario, args.set, args.out)
    run_dir = setup.run_dir
    run_dir.start(setup.resolved_config(), setup.manifest())
    runner = setup.runner
    progress = None
    previous_sigterm = signal.signal(signal.SIGTERM, terminate) if in_main_thread() else None
    try:
        with progress_bar(runner.generation_units(), "generate", "task", args.json) as generation:
            began = time.perf_counter()
            runner.prepare(on_progress=generation.update)
            run_dir.manifest["generation_s"] = round(time.perf_counter() - began, 3)
        points = len(setup.scenario.sweep_points())
        progress = progress_bar(runner.work_units(), f"{setup.name} point 1/{points}", "task", args.json)
        for done, results in enumerate(runner.run(on_batch=progress.update), start=1):
            progress.set_description(f"{setup.name} point {min(done + 1, points)}/{points}", refresh=False)
            rows = [row for result in results for row in setup.rows(result)]
            run_dir.add_rows(rows)
    except KeyboardInterrupt:
        close_progress(progress)
        run_dir.finish("interrupted")
        raise Interrupted(f"interrupted: {run_dir.manifest['points_done']} finished point(s) kept in {run_dir.path}") \
            from None
    except BaseException as err:
        close_progress(progress)
        run_dir.finish("failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    close_progress(progress)
    run_dir.finish("complete")
    frame = run_dir.frame()
    if args.json:
        rows = [{key: _json_safe(value) for key, value in row.items()} for row in run_dir.rows]
        print(json.dumps(rows, indent=2))
        return 0
    _print_summary(frame, run_dir.path, "complete")
    return 0
