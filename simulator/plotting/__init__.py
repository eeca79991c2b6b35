"""Fig. 5/6-style figures from run folders (``metrics.parquet``, see :mod:`simulator.results`).

- Fig. 5: task performance versus SNR = Es/N0 (dB), one line per system and sharing variant, one
  panel per task (accuracy for VQA / text classification, corpus BLEU-4 for captioning).
- Fig. 6: transmitted data versus number of users at one SNR: ``bytes_total`` summed over the
  task rows of each (system, sharing variant, number of users, seed), then mean (and standard
  deviation) over seeds. Analog accounting as in the results: bytes = symbols x 2 reals x
  ``bits_per_real`` / 8 + side-information bits / 8; 1 kB = 1000 bytes.
- Fig. 5 and Fig. 6 use the ``fixed``-rate rows only (all rows of results without an ``adaptation`` column).
- rate: accuracy versus transmitted bytes per task, one panel per SNR, one curve per rate-adaptation
  mode (its settings, e.g. several targets, are the curve's points; :mod:`simulator.adaptation`).
- efficiency: accuracy versus channel uses per task, one panel per SNR, one point per system and
  adaptation setting, with the Fano bound (:func:`channels.bounds.fano_channel_uses`).

Error bars are the sample standard deviation over seeds, drawn only where a point has two or
more seeds. The figures are drawn on a bare :class:`matplotlib.figure.Figure` rendered with the
Agg canvas (no pyplot, no display). Nothing here prints; bad input raises
:class:`simulator.errors.UserError`. Fig. 5/6 and what they share are in
:mod:`simulator.plotting.figures`, the resource figures in :mod:`simulator.plotting.resources`.
"""

from simulator.plotting.figures import (BASE_COLUMNS, FIG5_COLUMNS, FIG6_COLUMNS, TASK_ORDER, draw_fig5, draw_fig6,
                                        drop_duplicate_rows, fig5_data, fig6_data, fixed_rate, load_results,
                                        save_figure, select_snr, variant_label)
from simulator.plotting.resources import draw_efficiency, draw_rate

__all__ = [
    "BASE_COLUMNS", "FIG5_COLUMNS", "FIG6_COLUMNS", "TASK_ORDER",
    "load_results", "drop_duplicate_rows", "fig5_data", "fig6_data", "select_snr",
    "draw_fig5", "draw_fig6", "draw_rate", "draw_efficiency", "fixed_rate", "save_figure", "variant_label",
]
