"""Parameter sweeps over scenarios (``python -m simulator sweep SWEEP.yaml``), locally or on Ray.

A sweep file (:class:`SweepFile`) names a base scenario, fixed overrides (``set``) and a grid of
overrides (``grid``: dotted scenario key -> list of values; the cartesian product is swept). Each
grid point is the base scenario with ``set`` and its grid values applied exactly as
``run --set key=value`` would apply them, and is run through the same code path as ``run``
(:class:`simulator.runner.RunSetup`, :class:`simulator.engine.SweepRunner`,
:func:`simulator.results.summarize`). A grid value may itself be a list (``snr_db: [[0], [10]]``:
two points, one SNR each).

Point id: the first 10 hex digits of the SHA-256 of the point's overrides (``set`` and grid values,
JSON with sorted keys). It does not change when the grid is extended, so a resumed sweep with more
values only runs the new points. ``20`` and ``20.0`` are different values (and ids).

Output folder::

    sweep.yaml               the sweep as run (defaults filled in, base resolved to an absolute path)
    parts/<point_id>.parquet the point's rows (columns of simulator.results.COLUMNS + grid columns + point_id)
    parts/<point_id>.json    status ok / error, error message, wall time, overrides, worker host/pid
    metrics.parquet          every ok part of this sweep's grid, in grid order (rebuilt at the end)
    manifest.json            status, per-point table, versions, git commit, timings

Every file is written to a temporary name and moved into place with ``os.replace``; a part's json
is written after its parquet, so an ``ok`` json always has its rows. Grid keys become extra
columns named by the dotted key; list/dict values are stored as JSON text; a key that already is a
column (``snr_db``, ``num_users``, ``seed``) is not repeated: that column holds the row's value.

Ray: points are remote tasks with the sweep's per-point resources, retried on worker loss; the
worker returns the rows to the driver, which writes the parts (the output folder need not be
shared with cluster nodes). Each worker process keeps the codecs it loaded (keyed by checkpoint
path, device and weight-file mtime) and reuses them for later points.

Modules: :mod:`~simulator.sweep.grid` (the sweep file, points and ids), :mod:`~simulator.sweep.point`
(one point, as ``run``), :mod:`~simulator.sweep.store` (the output folder),
:mod:`~simulator.sweep.ray_backend` (Ray), :mod:`~simulator.sweep.driver` (plan and run).
"""

from simulator.sweep.driver import SweepPlan, plan_sweep, run_sweep
from simulator.sweep.grid import GridPoint, SweepFile, SweepResources, expand_grid, load_sweep, point_id
from simulator.sweep.point import ModelCache, execute_point
from simulator.sweep.ray_backend import ray_session
from simulator.sweep.store import SweepDirectory

__all__ = ["SweepFile", "SweepResources", "GridPoint", "load_sweep", "expand_grid", "point_id", "execute_point",
           "ModelCache", "SweepDirectory", "SweepPlan", "plan_sweep", "run_sweep", "ray_session"]
