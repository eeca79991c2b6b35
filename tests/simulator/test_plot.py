"""``python -m simulator plot``: Fig. 5/6 from synthetic run folders (no checkpoint, no torch)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from simulator import plotting
from simulator.cli import main

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def _rows(num_users: int, seed: int, snrs=(0.0, 10.0, 20.0)) -> list[dict]:
    """Rows like results.summarize: m4sc off / on (vqa + classify), deepsc_vqa (vqa), deepsc (classify).

    bytes_total encodes the key so the aggregation can be checked exactly:
    per task row = 1000 * num_users * factor + seed, factor: off 1.0, on 0.5, deepsc_vqa 1.2.
    """
    rows = []
    variants = [("m4sc", False, math.nan, 1.0, ("vqa", "classify")),
                ("m4sc", True, 0.95, 0.5, ("vqa", "classify")),
                ("deepsc_vqa", False, math.nan, 1.2, ("vqa",)),
                ("deepsc", False, math.nan, 1.1, ("classify",))]
    for snr in snrs:
        for system, sharing, threshold, factor, tasks in variants:
            for task in tasks:
                rows.append({
                    "system": system, "task": task, "channel": "awgn", "placement": "snr_list",
                    "traffic": "snapshot", "snr_db": snr, "tx_power_dbm": math.nan, "num_users": num_users,
                    "sharing": sharing, "threshold": threshold, "seed": seed, "num_tasks": 10 * num_users,
                    "accuracy": min(1.0, 0.5 + 0.02 * snr + 0.01 * seed), "bleu4": math.nan,
                    "symbols_public": 0.0, "symbols_private": 0, "overhead_bits": 0, "bits_per_real": 8,
                    "bytes_total": 1000.0 * num_users * factor + seed, "bytes_per_task": 0.0,
                    "sharing_ratio": 0.0, "latency_mean_s": 0.001,
                })
    return rows


def _write(folder, rows) -> str:
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(folder / "metrics.parquet")
    return str(folder)


@pytest.fixture
def sweep(tmp_path):
    """Runs at 1, 4, 8 users x seeds 0, 1, each in its own folder."""
    return [_write(tmp_path / f"u{u}_s{s}", _rows(u, s)) for u in (1, 4, 8) for s in (0, 1)]


def test_writes_both_figures(sweep, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", *sweep, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    for stem in ("fig5", "fig6"):
        for ext in ("png", "pdf"):
            path = out / f"{stem}.{ext}"
            assert str(path) in printed
            assert path.stat().st_size > 1000
        assert (out / f"{stem}.png").read_bytes()[:8] == PNG_HEADER
        assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_default_out_is_first_folder_and_caption_task(tmp_path, capsys):
    rows = _rows(4, 0)
    rows += [dict(r, task="caption", accuracy=math.nan, bleu4=40.0 + r["snr_db"]) for r in rows if r["task"] == "vqa"]
    folder = _write(tmp_path / "run", rows)
    assert main(["plot", folder, "--figure", "5"]) == 0
    assert (tmp_path / "run" / "fig5.png").read_bytes()[:8] == PNG_HEADER
    stats = plotting.fig5_data(plotting.load_results([folder]))
    assert set(stats.loc[stats["task"] == "caption", "metric"]) == {"bleu4"}
    assert set(stats.loc[stats["task"] != "caption", "metric"]) == {"accuracy"}


def test_fig5_mean_and_std_over_seeds(sweep):
    stats = plotting.fig5_data(plotting.load_results(sweep))
    point = stats[(stats["task"] == "vqa") & (stats["system"] == "m4sc") & stats["sharing"]
                  & (stats["num_users"] == 4) & (stats["snr_db"] == 10.0)]
    assert len(point) == 1
    assert point["mean"].iloc[0] == pytest.approx(0.5 + 0.2 + 0.005)
    assert point["std"].iloc[0] == pytest.approx(np.std([0.70, 0.71], ddof=1))
    assert point["num_seeds"].iloc[0] == 2


def test_fig6_sums_bytes_over_tasks_and_averages_over_seeds(sweep):
    data = plotting.load_results(sweep)
    stats = plotting.fig6_data(data)
    assert set(stats["snr_db"]) == {20.0}  # the highest SNR by default
    for (system, sharing, factor, num_tasks) in [("m4sc", False, 1.0, 2), ("m4sc", True, 0.5, 2),
                                                  ("deepsc_vqa", False, 1.2, 1)]:
        line = stats[(stats["system"] == system) & (stats["sharing"] == sharing)].sort_values("num_users")
        assert list(line["num_users"]) == [1, 4, 8]
        for _, row in line.iterrows():
            u = row["num_users"]
            per_seed = [num_tasks * (1000.0 * u * factor + s) for s in (0, 1)]
            assert row["bytes_mean"] == pytest.approx(np.mean(per_seed))
            assert row["kB_mean"] == pytest.approx(np.mean(per_seed) / 1000)
            assert row["bytes_std"] == pytest.approx(np.std(per_seed, ddof=1))
            assert row["num_seeds"] == 2
    # lines: M4SC sharing first, then M4SC no sharing, then the other systems
    first = stats.drop_duplicates(["system", "sharing"])[["system", "sharing"]].values.tolist()
    assert first[:2] == [["m4sc", True], ["m4sc", False]]
    at_zero = plotting.fig6_data(data, snr_db=0.0)
    assert set(at_zero["snr_db"]) == {0.0}


def test_fig6_one_task(sweep, tmp_path, capsys):
    data = plotting.load_results(sweep)
    stats = plotting.fig6_data(data, task="vqa")
    row = stats[(stats["system"] == "m4sc") & ~stats["sharing"] & (stats["num_users"] == 4)].iloc[0]
    assert row["bytes_mean"] == pytest.approx(4000.5)  # one vqa row per seed, not vqa + classify
    assert set(stats["system"]) == {"m4sc", "deepsc_vqa"}
    assert main(["plot", *sweep, "--figure", "6", "--task", "vqa", "--out", str(tmp_path / "o")]) == 0
    assert main(["plot", *sweep, "--figure", "6", "--task", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "--task nope" in capsys.readouterr().err


def test_fig6_single_seed_has_no_error_bar(tmp_path):
    folders = [_write(tmp_path / f"u{u}", _rows(u, 0)) for u in (1, 2)]
    stats = plotting.fig6_data(plotting.load_results(folders))
    assert stats["bytes_std"].isna().all()


def test_duplicate_folder_rows_kept_once(sweep):
    data = plotting.load_results(sweep + [sweep[0] + "/"])  # same folder twice: read once
    assert len(data) == sum(len(pd.read_parquet(f"{f}/metrics.parquet")) for f in sweep)
    doubled = pd.concat([data, data.iloc[:3]], ignore_index=True)
    kept, dropped = plotting.drop_duplicate_rows(doubled)
    assert dropped == 3 and len(kept) == len(data)



def test_models_of_a_grid_column_are_kept_apart_and_averaged_per_seed_in_fig5():
    """DeepSC at two more training seeds (a sweep over baselines.deepsc_checkpoint) beside a Fig. 5
    run: no row is dropped as a duplicate, and each seed's DeepSC point is the mean of the models."""
    from simulator.plotting.figures import _line_labels

    base = pd.DataFrame([r for s in (0, 1) for r in _rows(8, s)])
    deepsc = base[base["system"] == "deepsc"]
    others = pd.concat([deepsc.assign(accuracy=deepsc["accuracy"] + shift, **{"baselines.deepsc_checkpoint": f"m{i}"})
                        for i, shift in ((1, 0.03), (2, 0.06))], ignore_index=True)
    data, dropped = plotting.drop_duplicate_rows(pd.concat([base, others], ignore_index=True))
    assert dropped == 0 and len(data) == len(base) + len(others)
    stats = plotting.fig5_data(data)
    point = stats[(stats["system"] == "deepsc") & (stats["snr_db"] == 10.0)].iloc[0]
    # per seed: mean of the three models = seed's accuracy + 0.03; then mean over seeds 0 and 1
    assert point["mean"] == pytest.approx(0.5 + 0.2 + 0.005 + 0.03) and point["runs_per_seed"] == 3
    labels = _line_labels(stats, ["system", "sharing", "threshold", "num_users", "channel"])
    assert {v for v in labels.values() if v.startswith("DeepSC ")} == {"DeepSC [mean of 3 runs]"}
    assert not any("mean of" in v for v in labels.values() if not v.startswith("DeepSC "))

def test_missing_folder_exits_2(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["plot", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and err.count("\n") == 1


def test_folder_without_parquet_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "metrics.parquet" in err and str(tmp_path / "empty") in err


def test_missing_column_exits_2(tmp_path, capsys):
    rows = [{k: v for k, v in r.items() if k != "bytes_total"} for r in _rows(4, 0)]
    folder = _write(tmp_path / "run", rows)
    assert main(["plot", folder, "--figure", "6"]) == 2
    assert "'bytes_total'" in capsys.readouterr().err
    # figure 5 does not need it
    assert main(["plot", folder, "--figure", "5", "--out", str(tmp_path / "o")]) == 0


def test_fig6_single_user_count(tmp_path, capsys):
    folders = [_write(tmp_path / f"s{s}", _rows(8, s)) for s in (0, 1)]
    assert main(["plot", *folders, "--figure", "6", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "several user counts" in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "fig6.png").exists()
    # with "all": figure 5 written, figure 6 skipped with a note
    assert main(["plot", *folders, "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "o" / "fig5.png").exists() and not (tmp_path / "o" / "fig6.png").exists()
    assert "figure 6 skipped" in captured.err


def test_unknown_snr_exits_2(sweep, tmp_path, capsys):
    assert main(["plot", *sweep, "--figure", "6", "--snr-db", "7", "--out", str(tmp_path / "o")]) == 2
    assert "--snr-db 7" in capsys.readouterr().err


def _adaptive_rows() -> list[dict]:
    """m4sc rows with rate adaptation: fixed at 64 kB, importance at two targets below it."""
    rows = []
    for row in _rows(8, 0, snrs=(0.0, 10.0)):
        if row["system"] != "m4sc" or row["task"] != "vqa":
            continue
        for label, kb, accuracy in (("fixed", 64.0, 0.70), ("importance@0.99", 26.0, 0.71), ("importance@0.9", 18.0, 0.69)):
            rows.append(dict(row, adaptation=label, bytes_total=kb * 1000 * row["num_tasks"], accuracy=accuracy))
    return rows


def test_rate_figure_draws_one_curve_per_mode_and_fig5_keeps_fixed_rows(tmp_path, capsys):
    folder = _write(tmp_path / "adaptive", _adaptive_rows())
    assert main(["plot", folder, "--figure", "rate"]) == 0
    for ext in ("png", "pdf"):
        assert (tmp_path / "adaptive" / f"rate.{ext}").stat().st_size > 1000
    figure = plotting.draw_rate(plotting.load_results([folder]))
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["SNR 0 dB", "SNR 10 dB"]
    curves = {line.get_label(): sorted(line.get_xdata()) for line in panels[0].get_lines()}
    assert curves == {"M4SC: fixed": [64.0], "M4SC: importance": [18.0, 26.0],  # kB per task
                      "M4SC, sharing: fixed": [64.0], "M4SC, sharing: importance": [18.0, 26.0]}
    assert set(plotting.fixed_rate(plotting.load_results([folder]))["adaptation"]) == {"fixed"}


def test_rate_figure_needs_two_modes(tmp_path, capsys):
    rows = [r for r in _adaptive_rows() if r["adaptation"] == "fixed"]
    folder = _write(tmp_path / "fixed", rows)
    assert main(["plot", folder, "--figure", "rate"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: the rate figure compares adaptation modes; the results hold only fixed"]
    assert not (tmp_path / "fixed" / "rate.png").exists()


def test_a_codec_compared_side_by_side_is_labelled_as_m4sc_with_its_name():
    from simulator.plotting.figures import _line_order, _system_name, variant_label

    assert _system_name("m4sc") == "M4SC" and _system_name("m4sc_gemma3_270m") == "M4SC (gemma3_270m)"
    assert variant_label("m4sc_gemma3_270m", False, float("nan")) == "M4SC (gemma3_270m), no sharing"
    assert variant_label("m4sc_gemma3_270m", True, 0.95) == "M4SC (gemma3_270m), sharing"
    keys = [{"system": s, "sharing": False, "threshold": float("nan")} for s in ("deepsc", "m4sc_gemma3_270m", "m4sc")]
    assert [k["system"] for k in sorted(keys, key=_line_order)] == ["m4sc", "m4sc_gemma3_270m", "deepsc"]


def test_efficiency_figure_puts_every_setting_at_its_channel_uses_with_the_fano_bound(tmp_path, capsys):
    from channels.bounds import fano_channel_uses

    rows = [dict(row, channel_uses_per_task=40.0 if row["adaptation"] == "fixed" else 12.0, answer_entropy_bits=4.0,
                 answer_cond_entropy_bits=2.5, num_answers=20.0) for row in _adaptive_rows()]
    digital = [dict(row, system="digital_answer", sharing=False, adaptation="fixed", accuracy=0.75,
                    channel_uses_per_task=30.0) for row in rows if row["adaptation"] == "fixed" and not row["sharing"]]
    folder = _write(tmp_path / "efficiency", rows + digital)
    assert main(["plot", folder, "--figure", "efficiency"]) == 0
    for ext in ("png", "pdf"):
        assert (tmp_path / "efficiency" / f"efficiency.{ext}").stat().st_size > 1000
    figure = plotting.draw_efficiency(plotting.load_results([folder]))
    panels = [ax for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["SNR 0 dB", "SNR 10 dB"]
    for ax, snr in zip(panels, (0.0, 10.0)):
        (bound,) = [line for line in ax.get_lines() if line.get_label().startswith("Fano bound")]
        uses, accuracy = bound.get_xdata(), bound.get_ydata()
        assert accuracy[-1] == 1.0 and uses[-1] == pytest.approx(2.5 / math.log2(1 + 10 ** (snr / 10)))
        assert all(u == pytest.approx(fano_channel_uses(2.5, a, 20, snr)) for u, a in zip(uses, accuracy))
        assert list(uses) == sorted(uses) and min(uses) > 0  # more accuracy, more channel uses; none at 0
        points = {c.get_label(): c.get_offsets().data.tolist() for c in ax.collections}
        assert points["Digital answer (text, LDPC+QAM)"] == [[30.0, 0.75]]
        assert points["M4SC: fixed"] == [[40.0, 0.70]] and points["M4SC, sharing: importance@0.9"] == [[12.0, 0.69]]


def test_efficiency_figure_needs_channel_uses(tmp_path, capsys):
    folder = _write(tmp_path / "old", _adaptive_rows())
    assert main(["plot", folder, "--figure", "efficiency"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "channel_uses_per_task, answer_entropy_bits" in err[0]
