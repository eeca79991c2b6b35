"""Figures of the resources a system spends (:mod:`simulator.plotting`): accuracy against
transmitted bytes per rate-adaptation mode (``rate``) and against channel uses, with the capacity
bound (``efficiency``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from simulator.errors import UserError
from simulator.plotting.figures import (_MARKERS, _TASK_TITLES, _channel_text, _is_m4sc, _legend_below, _line_order,
                                        _new_figure, _select_task, _system_name)

__all__ = ["draw_rate", "draw_efficiency"]


def draw_rate(data: pd.DataFrame, task: str = "vqa"):
    """Accuracy versus bytes per task (mean over seeds), one panel per SNR, one curve per (system,
    sharing, adaptation mode) of the rows with an ``adaptation`` column. Returns the Figure."""
    if "adaptation" not in data.columns:
        raise UserError("the rate figure needs results with an adaptation column (run with adaptation: [...])")
    rows = _select_task(data, task).dropna(subset=["accuracy"])
    rows = rows.assign(mode=rows["adaptation"].astype(str).str.split("@").str[0],
                       kb_per_task=rows["bytes_total"] / rows["num_tasks"] / 1000.0)
    if rows["mode"].nunique() < 2:
        raise UserError("the rate figure compares adaptation modes; the results hold only "
                        + ", ".join(sorted(rows["mode"].unique())))
    keys = ["snr_db", "system", "sharing", "mode", "adaptation"]
    stats = rows.groupby(keys, dropna=False)[["accuracy", "kb_per_task"]].mean().reset_index()
    snrs = sorted(stats["snr_db"].unique())
    figure, axes = _snr_panels(len(snrs), 0.6)
    for ax, snr in zip(axes, snrs):
        part = stats[stats["snr_db"] == snr]
        for i, ((system, sharing, mode), curve) in enumerate(part.groupby(["system", "sharing", "mode"], sort=True)):
            curve = curve.sort_values("kb_per_task")
            label = f"{_system_name(system)}{', sharing' if sharing else ''}: {mode}"
            ax.plot(curve["kb_per_task"], curve["accuracy"], marker=_MARKERS[i % len(_MARKERS)], label=label,
                    color=f"C{i % 10}", linewidth=1.4)
        ax.set_title(f"SNR {snr:g} dB", fontsize=10)
        ax.set_xlabel("transmitted data per task (kB)")
        ax.set_ylabel("accuracy")
        ax.grid(True, alpha=0.3)
    return _finish_panels(figure, axes, len(snrs),
                          f"{_TASK_TITLES.get(task, task)}: accuracy vs transmitted data per rate-adaptation mode — "
                          f"channel: {_channel_text(stats.get('channel', rows['channel']))}")


def draw_efficiency(data: pd.DataFrame, task: str = "vqa"):
    """Accuracy versus channel uses per task (complex symbols on the air, side information and
    retransmissions included; mean over seeds), one panel per SNR, one point per (system, sharing,
    adaptation setting), with the Fano bound where the results have its columns: at each accuracy,
    the fewest channel uses per task any scheme needs on that SNR's AWGN channel for a user who holds
    the question (:func:`channels.bounds.fano_channel_uses` of ``answer_cond_entropy_bits`` and
    ``num_answers``); no scheme that serves each user on its own can lie left of it (with sharing, one
    broadcast serves several users, and its symbols are counted once). Returns the Figure."""
    needed = ["channel_uses_per_task", "answer_entropy_bits", "adaptation"]
    missing = [column for column in needed if column not in data.columns]
    if missing:
        raise UserError(f"the efficiency figure needs results with {', '.join(missing)} (run them again with this "
                        "version)")
    rows = _select_task(data, task).dropna(subset=["accuracy"])
    if rows.empty:
        raise UserError(f"the efficiency figure needs {task} rows with an accuracy")
    keys = ["snr_db", "system", "sharing", "adaptation"]
    stats = rows.groupby(keys, dropna=False)[["accuracy", "channel_uses_per_task", "answer_entropy_bits"]] \
        .mean().reset_index()
    fano = {"answer_cond_entropy_bits", "num_answers"} <= set(rows.columns) and rows["num_answers"].notna().any()
    conditional = float(rows["answer_cond_entropy_bits"].mean()) if fano else math.nan
    num_answers = int(rows["num_answers"].max()) if fano else 0
    snrs = sorted(stats["snr_db"].unique())
    figure, axes = _snr_panels(len(snrs), 0.9)
    systems = sorted(stats[["system", "sharing"]].drop_duplicates().itertuples(index=False, name=None),
                     key=lambda key: _line_order({"system": key[0], "sharing": key[1], "threshold": math.nan}))
    adaptations = sorted(stats["adaptation"].astype(str).unique())
    entropy = float(stats["answer_entropy_bits"].mean())
    for ax, snr in zip(axes, snrs):
        part = stats[stats["snr_db"] == snr]
        for i, (system, sharing) in enumerate(systems):
            for j, adaptation in enumerate(adaptations):
                point = part[(part["system"] == system) & (part["sharing"] == sharing)
                             & (part["adaptation"].astype(str) == adaptation)]
                if point.empty:
                    continue
                mode = f": {adaptation}" if len(adaptations) > 1 and _is_m4sc(str(system)) else ""
                ax.scatter(point["channel_uses_per_task"], point["accuracy"], color=f"C{i % 10}",
                           marker=_MARKERS[j % len(_MARKERS)], s=36,
                           label=f"{_system_name(str(system))}{', sharing' if sharing else ''}{mode}")
        if fano:
            from channels.bounds import fano_channel_uses

            accuracies = [i / 200 for i in range(201)]
            curve = [(fano_channel_uses(conditional, a, num_answers, snr), a) for a in accuracies]
            curve = [(uses, a) for uses, a in curve if uses > 0]
            if curve:
                ax.plot(*zip(*curve), color="k", linestyle=":", linewidth=1.2,
                        label="Fano bound: (H(A|Q) - h(1 - acc) - (1 - acc) log2(M - 1)) / log2(1 + SNR)")
        ax.set_xscale("log")
        ax.set_title(f"SNR {snr:g} dB", fontsize=10)
        ax.set_xlabel("channel uses per task (complex symbols)")
        ax.set_ylabel("accuracy")
        ax.grid(True, alpha=0.3, which="both")
    return _finish_panels(figure, axes, len(snrs),
                          f"{_TASK_TITLES.get(task, task)}: accuracy vs channel uses per task — channel: "
                          f"{_channel_text(rows['channel'])}; H(answer) = {entropy:.2f} bit"
                          + (f", H(answer | question) = {conditional:.2f} bit, {num_answers} answers" if fano else ""))


def _snr_panels(count: int, legend_room_in: float):
    """A figure with ``count`` panels, three to a row, and room below them for the legend (inches)."""
    columns = min(3, count)
    figure = _new_figure(4.2 * columns, 3.6 * math.ceil(count / columns) + legend_room_in)
    return figure, np.atleast_1d(figure.subplots(math.ceil(count / columns), columns, squeeze=False).ravel())


def _finish_panels(figure, axes, used: int, title: str):
    """Hide the grid's unused panels, set the title, put one legend below the used ones."""
    for ax in axes[used:]:
        ax.set_visible(False)
    figure.suptitle(title, fontsize=10)
    _legend_below(figure, axes[:used])
    return figure
