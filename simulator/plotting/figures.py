"""Fig. 5 and Fig. 6 (accuracy versus SNR, transmitted data versus users), the results loading and
the labels and styles the figures share (:mod:`simulator.plotting`)."""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from simulator.errors import UserError, not_a_folder

__all__ = [
    "BASE_COLUMNS", "FIG5_COLUMNS", "FIG6_COLUMNS", "TASK_ORDER",
    "load_results", "drop_duplicate_rows", "fig5_data", "fig6_data", "select_snr",
    "draw_fig5", "draw_fig6", "fixed_rate", "save_figure", "variant_label",
]

#: Columns every figure needs.
BASE_COLUMNS = ["system", "task", "channel", "snr_db", "num_users", "sharing", "threshold", "seed"]
FIG5_COLUMNS = BASE_COLUMNS + ["accuracy", "bleu4"]
FIG6_COLUMNS = BASE_COLUMNS + ["bytes_total", "bits_per_real"]
#: Identify one measured row (results.KEY_COLUMNS); those missing from a file are ignored.
_KEY_COLUMNS = ["system", "task", "channel", "placement", "traffic", "snr_db", "tx_power_dbm", "num_users",
                "sharing", "threshold", "adaptation", "seed"]

TASK_ORDER = ("vqa", "classify", "caption")
_TASK_TITLES = {"vqa": "VQA", "classify": "Text classification", "caption": "Image captioning"}
_SYSTEM_NAMES = {"m4sc": "M4SC", "deepsc": "DeepSC", "deepsc_vqa": "DeepSC-VQA", "deepsc-vqa": "DeepSC-VQA",
                 "digital": "Digital (LDPC+QAM)", "digital_source": "Digital source (PNG+text, LDPC+QAM)",
                 "digital_answer": "Digital answer (text, LDPC+QAM)"}
#: Systems whose bytes are the information payload of a digital chain (not analog symbols).
_DIGITAL_SYSTEMS = ("digital", "digital_source", "digital_answer")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")


# ---- loading -----------------------------------------------------------------------------------
def load_results(folders: Iterable[str | Path], required: Iterable[str] = BASE_COLUMNS) -> pd.DataFrame:
    """Concatenate ``metrics.parquet`` of every folder (each folder once), with a ``source`` column.

    Raises UserError naming the folder without ``metrics.parquet`` or the first missing column.
    """
    frames = []
    seen = set()
    required = list(dict.fromkeys(required))
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            raise UserError(not_a_folder(path, "results folder"))
        file = path / "metrics.parquet"
        if not file.is_file():
            raise UserError(f"no metrics.parquet in {path}")
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            frame = pd.read_parquet(file)
        except Exception as err:  # pyarrow raises several types for a corrupt file
            raise UserError(f"cannot read {file}: {type(err).__name__}: {err}") from None
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise UserError(f"{file}: missing column {missing[0]!r}"
                            + (f" (and {', '.join(missing[1:])})" if len(missing) > 1 else ""))
        frame = frame.copy()
        frame["source"] = str(path)
        frames.append(frame)
    if not frames:
        raise UserError("no results folders given")
    data = pd.concat(frames, ignore_index=True)
    if data.empty:
        raise UserError("the metrics tables hold no rows (runs not finished?)")
    for column in ("system", "task", "channel"):
        data[column] = data[column].astype(str)
    data["sharing"] = data["sharing"].astype(bool)
    return data


def drop_duplicate_rows(data: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep the first of rows with the same key (the same point given in several folders).

    Returns the frame and how many rows were dropped.
    """
    from simulator.results import COLUMNS

    # A sweep's grid columns (e.g. baselines.deepsc_checkpoint) tell points apart too.
    keys = [c for c in _KEY_COLUMNS if c in data.columns]
    keys += [c for c in data.columns if c not in COLUMNS and c not in ("source", "point_id")]
    kept = data.drop_duplicates(subset=keys, keep="first").reset_index(drop=True)
    return kept, len(data) - len(kept)


def fixed_rate(data: pd.DataFrame) -> pd.DataFrame:
    """The rows of the single-rate system (``adaptation == "fixed"``; all rows without the column)."""
    if "adaptation" not in data.columns:
        return data
    return data[data["adaptation"].astype(str) == "fixed"]


# ---- labels ------------------------------------------------------------------------------------
def _system_name(system: str) -> str:
    """Display name; a codec compared side by side (scenario key ``codecs``, ``m4sc_<label>``) is
    ``M4SC (<label>)``."""
    if _is_m4sc(system) and system.lower() != "m4sc":
        return f"M4SC ({system[len('m4sc_'):]})"
    return _SYSTEM_NAMES.get(system.lower(), system)


def _is_m4sc(system: str) -> bool:
    """The run's M4SC codec or another one compared beside it."""
    return system.lower() == "m4sc" or system.lower().startswith("m4sc_")


def variant_label(system: str, sharing: bool, threshold: float, several_thresholds: bool = False) -> str:
    """``M4SC, sharing (τ = 0.95)`` / ``M4SC, no sharing`` / ``DeepSC-VQA``."""
    name = _system_name(system)
    if sharing:
        if several_thresholds and threshold is not None and not (isinstance(threshold, float) and math.isnan(threshold)):
            return f"{name}, sharing (τ = {threshold:g})"
        return f"{name}, sharing"
    if _is_m4sc(system):
        return f"{name}, no sharing"
    return name


def _line_labels(frame: pd.DataFrame, line_keys: list[str]) -> dict[tuple, str]:
    """A label per distinct line key; num_users / channel added only when they vary."""
    several_thr = frame.loc[frame["sharing"], "threshold"].dropna().nunique() > 1
    vary_users = "num_users" in line_keys and frame["num_users"].nunique() > 1
    vary_channel = "channel" in line_keys and frame["channel"].nunique() > 1
    labels = {}
    for key in frame[line_keys].drop_duplicates().itertuples(index=False, name=None):
        item = dict(zip(line_keys, key))
        label = variant_label(item["system"], bool(item["sharing"]), item["threshold"], several_thr)
        extras = []
        if vary_users:
            extras.append(f"U = {int(item['num_users'])}")
        if vary_channel:
            extras.append(str(item["channel"]))
        if "runs_per_seed" in frame.columns:
            runs = int(frame.loc[_same_line(frame, item), "runs_per_seed"].max())
            if runs > 1:
                extras.append(f"mean of {runs} runs")
        labels[tuple(_nan_key(v) for v in key)] = label + (f" [{', '.join(extras)}]" if extras else "")
    return labels


def _line_order(key_dict: dict) -> tuple:
    """M4SC first, sharing before no sharing, then the other systems by name."""
    system = str(key_dict["system"]).lower()
    return (not _is_m4sc(system), system, not bool(key_dict["sharing"]),
            float("inf") if pd.isna(key_dict["threshold"]) else float(key_dict["threshold"]))


# ---- aggregation -------------------------------------------------------------------------------
def _mean_std(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    grouped = frame.groupby(keys, dropna=False, sort=True)[value]
    out = grouped.agg(mean="mean", std="std", num_seeds="count").reset_index()
    out.loc[out["num_seeds"] < 2, "std"] = np.nan
    return out


def fig5_data(data: pd.DataFrame) -> pd.DataFrame:
    """Per (task, system, sharing, threshold, num_users, channel, snr_db): mean and std over seeds.

    Columns: the keys, ``metric`` (accuracy or bleu4, by task), ``mean``, ``std`` (NaN with < 2
    seeds), ``num_seeds``, ``runs_per_seed``. Rows of one seed at one point (several placements, or
    several trained models of one system, e.g. DeepSC's training seeds from a sweep over
    ``baselines.deepsc_checkpoint``) are averaged first; ``runs_per_seed`` says how many.
    """
    keys = ["task", "system", "sharing", "threshold", "num_users", "channel", "snr_db"]
    parts = []
    for task, rows in data.groupby("task", sort=False):
        metric = "bleu4" if task == "caption" else "accuracy"
        rows = rows.dropna(subset=[metric])
        if rows.empty:
            continue
        per_seed = rows.groupby(keys + ["seed"], dropna=False)[metric].agg(["mean", "count"]).reset_index()
        stats = _mean_std(per_seed.rename(columns={"mean": metric}), keys, metric)
        stats["runs_per_seed"] = per_seed.groupby(keys, dropna=False, sort=True)["count"].max().to_numpy()
        stats["metric"] = metric
        parts.append(stats)
    if not parts:
        raise UserError("no accuracy / BLEU-4 values to plot (all NaN)")
    return pd.concat(parts, ignore_index=True)[keys + ["metric", "mean", "std", "num_seeds", "runs_per_seed"]]


def select_snr(data: pd.DataFrame, snr_db: float | None = None) -> tuple[pd.DataFrame, float]:
    """Rows at ``snr_db`` (default: the highest SNR present), and that SNR."""
    values = np.sort(data["snr_db"].dropna().unique())
    if len(values) == 0:
        raise UserError("no snr_db values in the results")
    if snr_db is None:
        snr_db = float(values[-1])
    match = np.isclose(data["snr_db"].to_numpy(dtype=float), snr_db, atol=1e-6)
    if not match.any():
        raise UserError(f"--snr-db {snr_db:g}: not in the results (present: {', '.join(f'{v:g}' for v in values)})")
    return data.loc[match].copy(), float(snr_db)


def _select_task(data: pd.DataFrame, task: str | None) -> pd.DataFrame:
    if task is None:
        return data
    present = sorted(set(data["task"]))
    if task not in present:
        raise UserError(f"--task {task}: not in the results (present: {', '.join(present)})")
    return data[data["task"] == task]


def fig6_data(data: pd.DataFrame, snr_db: float | None = None, task: str | None = None) -> pd.DataFrame:
    """The data behind Fig. 6 at one SNR (default the highest present), over all tasks or one ``task``.

    ``bytes_total`` is summed over the task rows of each (system, sharing, threshold, channel,
    num_users, seed), then averaged over seeds. Columns: system, sharing, threshold, channel,
    num_users, snr_db, ``bytes_mean``, ``bytes_std`` (NaN with < 2 seeds), ``kB_mean``,
    ``kB_std`` (1 kB = 1000 bytes), ``num_seeds``, ``tasks_per_user`` (mean over seeds; NaN when
    the table has no ``num_tasks``). Sorted by line, then num_users.
    """
    rows, snr = select_snr(_select_task(data, task), snr_db)
    line = ["system", "sharing", "threshold", "channel"]
    per_seed_keys = line + ["num_users", "seed"]
    agg = {"bytes_total": ("bytes_total", "sum")}
    if "num_tasks" in rows.columns:
        agg["num_tasks"] = ("num_tasks", "sum")
    per_seed = rows.groupby(per_seed_keys, dropna=False).agg(**agg).reset_index()
    stats = _mean_std(per_seed, line + ["num_users"], "bytes_total")
    stats = stats.rename(columns={"mean": "bytes_mean", "std": "bytes_std"})
    if "num_tasks" in per_seed.columns:
        tasks = per_seed.groupby(line + ["num_users"], dropna=False)["num_tasks"].mean().reset_index()
        stats = stats.merge(tasks, on=line + ["num_users"], how="left")
        stats["tasks_per_user"] = stats["num_tasks"] / stats["num_users"]
        stats = stats.drop(columns=["num_tasks"])
    else:
        stats["tasks_per_user"] = np.nan
    stats["snr_db"] = snr
    stats["kB_mean"] = stats["bytes_mean"] / 1000.0
    stats["kB_std"] = stats["bytes_std"] / 1000.0
    order = sorted(stats[line].drop_duplicates().to_dict("records"), key=_line_order)
    rank = {tuple(_nan_key(r[k]) for k in line): i for i, r in enumerate(order)}
    stats["_rank"] = [rank[tuple(_nan_key(v) for v in key)] for key in stats[line].itertuples(index=False, name=None)]
    stats = stats.sort_values(["_rank", "num_users"]).drop(columns="_rank").reset_index(drop=True)
    return stats[line + ["num_users", "snr_db", "bytes_mean", "bytes_std", "kB_mean", "kB_std", "num_seeds",
                         "tasks_per_user"]]


def _nan_key(value):
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def _same_line(frame: pd.DataFrame, item: dict) -> pd.Series:
    """Rows of ``frame`` whose values equal ``item``'s (NaN equal to NaN)."""
    mask = pd.Series(True, index=frame.index)
    for key, value in item.items():
        mask &= frame[key].isna() if pd.isna(value) else frame[key] == value
    return mask


# ---- drawing -----------------------------------------------------------------------------------
def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _plot_lines(ax, stats: pd.DataFrame, line_keys: list[str], x: str, y: str, err: str, labels: dict,
                styles: dict) -> None:
    for key_dict in sorted(stats[line_keys].drop_duplicates().to_dict("records"), key=_line_order):
        key = tuple(_nan_key(key_dict[k]) for k in line_keys)
        mask = np.ones(len(stats), dtype=bool)
        for k, v in key_dict.items():
            mask &= (stats[k].isna().to_numpy() if pd.isna(v) else (stats[k] == v).to_numpy())
        part = stats.loc[mask].sort_values(x)
        label = labels[key]
        style = styles.setdefault(label, {"marker": _MARKERS[(len(styles) + len(styles) // 10) % len(_MARKERS)],
                                          "linestyle": "-" if key_dict["sharing"] or not _is_m4sc(str(key_dict["system"])) else "--",
                                          "color": f"C{len(styles) % 10}"})
        yerr = part[err].to_numpy(dtype=float)
        ax.errorbar(part[x].to_numpy(dtype=float), part[y].to_numpy(dtype=float),
                    yerr=None if np.all(np.isnan(yerr)) else np.nan_to_num(yerr),
                    label=label, capsize=3, linewidth=1.6, markersize=6, **style)


def _task_order(values: Iterable[str]) -> list[str]:
    present = {str(v) for v in values}
    return [t for t in TASK_ORDER if t in present] + sorted(present - set(TASK_ORDER))


def _channel_text(values: Iterable[str]) -> str:
    names = sorted({str(v) for v in values})
    return ", ".join(names)


def _legend_below(figure, axes) -> None:
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    # as many columns as fit the figure width (about 7 pt per character plus the marker)
    width_pt = figure.get_figwidth() * 72
    entry_pt = 7.0 * max(len(lab) for lab in labels) + 45
    ncols = max(1, min(len(labels), 4, int(width_pt // entry_pt)))
    figure.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)


def draw_fig5(data: pd.DataFrame):
    """Fig. 5: accuracy (BLEU-4 for captioning) versus SNR, one panel per task. Returns the Figure."""
    stats = fig5_data(data)
    tasks = _task_order(stats["task"])
    figure = _new_figure(max(6.4, 4.6 * len(tasks) + 0.4), 4.8)
    axes = figure.subplots(1, len(tasks), squeeze=False)[0]
    line_keys = ["system", "sharing", "threshold", "num_users", "channel"]
    labels = _line_labels(stats, line_keys)
    styles: dict = {}
    seeds = int(stats["num_seeds"].max())
    for ax, task in zip(axes, tasks):
        part = stats[stats["task"] == task]
        _plot_lines(ax, part, line_keys, "snr_db", "mean", "std", labels, styles)
        metric = part["metric"].iloc[0]
        ax.set_title(_TASK_TITLES.get(task, task))
        ax.set_xlabel("SNR = Es/N0 (dB)")
        snrs = np.sort(part["snr_db"].dropna().unique())
        if len(snrs) <= 10:
            ax.set_xticks(snrs)
            ax.set_xticklabels([f"{v:g}" for v in snrs])
        ax.set_ylabel("BLEU-4" if metric == "bleu4" else "accuracy")
        top = 100.0 if metric == "bleu4" else 1.0
        ax.set_ylim(0.0, top * 1.02)
        ax.grid(True, alpha=0.3)
    title = f"Task performance vs SNR — channel: {_channel_text(stats['channel'])}"
    if seeds > 1:
        title += f"\n(mean ± std over {seeds} seeds)"
    figure.suptitle(title)
    _legend_below(figure, axes)
    return figure


def draw_fig6(data: pd.DataFrame, snr_db: float | None = None, task: str | None = None):
    """Fig. 6: transmitted data (kB) versus number of users at one SNR. Returns ``(Figure, stats)``.

    Raises UserError when the selected rows hold fewer than two user counts.
    """
    stats = fig6_data(data, snr_db, task)
    users = sorted(stats["num_users"].unique())
    if len(users) < 2:
        raise UserError(f"figure 6 needs runs at several user counts; the results hold only num_users = "
                        f"{int(users[0])} at SNR {stats['snr_db'].iloc[0]:g} dB (run e.g. --set num_users=N for "
                        "several N and pass all folders)")
    rows, snr = select_snr(_select_task(data, task), snr_db)
    figure = _new_figure(7.0, 5.4)
    ax = figure.subplots()
    line_keys = ["system", "sharing", "threshold", "channel"]
    labels = _line_labels(stats, line_keys)
    _plot_lines(ax, stats, line_keys, "num_users", "kB_mean", "kB_std", labels, {})
    ax.set_xlabel("number of users")
    ax.set_ylabel("transmitted data (kB)")
    ax.set_xticks(users)
    ax.set_xticklabels([str(int(u)) for u in users])
    positive = stats["kB_mean"][stats["kB_mean"] > 0]
    if len(positive) and positive.max() / positive.min() > 30:
        ax.set_yscale("log")  # systems an order of magnitude apart: a linear axis flattens the small ones
    else:
        ax.set_ylim(bottom=0.0)
    ax.grid(True, alpha=0.3)
    seeds = int(stats["num_seeds"].max())
    title = f"Transmitted data vs number of users — SNR {snr:g} dB, channel: {_channel_text(stats['channel'])}"
    ax.set_title(title, fontsize=10)
    # Totals grow with the number of users, so the upper left corner stays free.
    ax.legend(loc="upper left", frameon=True, framealpha=0.9)
    bits = sorted({int(b) for b in rows["bits_per_real"].dropna()})
    bits_text = "/".join(str(b) for b in bits) if bits else "?"
    tasks = stats["tasks_per_user"].dropna().round(6).unique()
    per_user = f"{tasks[0]:g} tasks per user" if len(tasks) == 1 else "tasks per user differ between points"
    digital = "; digital chains: information bytes" if rows["system"].isin(_DIGITAL_SYSTEMS).any() else ""
    caption = (f"Bytes = analog symbols × 2 reals × {bits_text} bits / 8 + side information (public-token maps)"
               f"{digital}; 1 kB = 1000 B. Sum over all tasks of a run ({', '.join(_task_order(rows['task']))}; {per_user})"
               + (f"; mean ± std over {seeds} seeds." if seeds > 1 else "."))
    figure.supxlabel(textwrap.fill(caption, 110), fontsize=7.5)
    return figure, stats


def save_figure(figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` into ``out_dir`` atomically; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in ("png", "pdf"):
        path = out / f"{stem}.{fmt}"
        tmp = out / f".{stem}.{fmt}.tmp"
        try:
            figure.savefig(tmp, format=fmt, dpi=150)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        written.append(path)
    return written
