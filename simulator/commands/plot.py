"""``python -m simulator plot RESULTS_DIR [RESULTS_DIR ...] [--figure 5|6|rate|efficiency|all] [--out DIR] [--snr-db X] [--task T]``:
Fig. 5/6-style figures from run folders (see :mod:`simulator.plotting`).

Reads and concatenates ``metrics.parquet`` of every folder (a point present in several folders,
same key and seed, is kept once), writes ``fig5.png/.pdf`` (accuracy vs SNR) and/or
``fig6.png/.pdf`` (transmitted data vs number of users) into ``--out`` (default: the first
folder) atomically, and prints the written paths. Notes (skipped figure, duplicate rows) go to
stderr. ``--figure rate`` writes ``rate.png/.pdf``: accuracy vs transmitted data per rate-adaptation
mode, one panel per SNR (``--task``, default vqa). ``--figure efficiency`` writes
``efficiency.png/.pdf``: accuracy vs channel uses per task of every system and adaptation setting,
one panel per SNR, with the Fano bound (channels.bounds). Figures 5 and 6 show the
fixed-rate rows.
"""

from __future__ import annotations

import math
import sys

__all__ = ["add_arguments", "main"]


def add_arguments(parser) -> None:
    parser.add_argument("results", nargs="+", metavar="RESULTS_DIR",
                        help="run folders holding metrics.parquet (e.g. several runs at different num_users / seeds)")
    parser.add_argument("--figure", choices=["5", "6", "rate", "efficiency", "all"], default="all",
                        help="5: accuracy vs SNR; 6: transmitted data vs number of users; rate: accuracy vs "
                             "transmitted data per rate-adaptation mode; efficiency: accuracy vs channel uses per "
                             "task with the Fano bound; all (default): 5 and 6, "
                             "figure 6 skipped with a note when only one user count is present")
    parser.add_argument("--out", default=None, help="output folder (default: the first RESULTS_DIR)")
    parser.add_argument("--snr-db", type=float, default=None, metavar="X",
                        help="SNR (dB) of figure 6 (default: the highest SNR in the results)")
    parser.add_argument("--task", default=None, metavar="TASK",
                        help="figure 6 counts only this task's rows, e.g. vqa as in the paper (default: all tasks); "
                             "the rate and efficiency figures' task (default: vqa)")


def main(args) -> int:
    from simulator import plotting
    from simulator.errors import UserError

    if args.snr_db is not None and not math.isfinite(args.snr_db):
        raise UserError("--snr-db must be finite")
    want5 = args.figure in ("5", "all")
    want6 = args.figure in ("6", "all")
    required = list(plotting.BASE_COLUMNS)
    if want5:
        required += plotting.FIG5_COLUMNS
    if want6:
        required += plotting.FIG6_COLUMNS
    data = plotting.load_results(args.results, required)
    data, dropped = plotting.drop_duplicate_rows(data)
    if args.figure in ("rate", "efficiency"):
        draw = plotting.draw_rate if args.figure == "rate" else plotting.draw_efficiency
        try:
            for path in plotting.save_figure(draw(data, args.task or "vqa"),
                                             args.out if args.out is not None else args.results[0], args.figure):
                print(path)
        except OSError as err:
            raise UserError(f"cannot write figures to {args.out or args.results[0]}: {err}") from None
        return 0
    data = plotting.fixed_rate(data)
    if dropped:
        print(f"note: {dropped} row(s) appear in several folders with the same key and seed; kept once",
              file=sys.stderr)
    out_dir = args.out if args.out is not None else args.results[0]

    figures = []
    if want5:
        figures.append(("fig5", plotting.draw_fig5(data)))
    if want6:
        try:
            figure, _stats = plotting.draw_fig6(data, args.snr_db, args.task)
            figures.append(("fig6", figure))
        except UserError as err:
            if args.figure == "6" or "several user counts" not in str(err):
                raise
            print(f"note: figure 6 skipped: {err}", file=sys.stderr)
    try:
        for stem, figure in figures:
            for path in plotting.save_figure(figure, out_dir, stem):
                print(path)
    except OSError as err:
        raise UserError(f"cannot write figures to {out_dir}: {err}") from None
    return 0
