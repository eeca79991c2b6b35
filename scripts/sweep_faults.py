"""Fault drills for `python -m simulator sweep`: the rows after a fault must equal a clean run's.

    python scripts/sweep_faults.py kill-resume [--sweep scenarios/fig6.yaml] [--kill-at 0.15 0.6 0.9]
    python scripts/sweep_faults.py ray-cluster [--sweep scenarios/fig6.yaml] [--kill-worker-after 20]

kill-resume: runs the sweep once undisturbed, then, for each kill moment (a fraction of the clean
run's wall time: during start-up, mid-way, near the end), starts it afresh in its own process group,
SIGKILLs the whole group (driver, embedded Ray, workers) then and runs ``--resume`` until it completes.

ray-cluster: a two-node Ray cluster on this machine, as a user would start one on two hosts (``ray
start --head`` bound to 127.0.0.1 with token authentication, then ``ray start --address`` as the
worker node, one CPU each). The sweep runs through ``--address``; the worker node is SIGKILLed
mid-sweep. The sweep either finishes on the head (Ray retries the lost points) or records them as
failed, and ``--resume`` (on the head) completes them.

Both compare ``metrics.parquet`` with the clean run's: 0 lost rows, 0 duplicated rows, every column
equal. Exit status 0 when every drill holds, 1 otherwise. Minutes on a 2-core machine (fig6: 15
points); ``--sweep`` takes any sweep file.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simulator.results import KEY_COLUMNS  # noqa: E402  (after the path: runs from a clean clone)


def _sweep(sweep: Path, out: Path, *extra: str, env=None, new_group: bool = False) -> subprocess.Popen:
    command = [sys.executable, "-m", "simulator", "sweep", str(sweep), "--out", str(out), *extra]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=new_group)


def _finish(process: subprocess.Popen, what: str) -> int:
    _, err = process.communicate()
    last = err.strip().splitlines()[-1] if err.strip() else ""
    print(f"  {what}: exit {process.returncode} {last}")
    return process.returncode


def compare(clean: Path, faulted: Path) -> tuple[int, int, bool]:
    """``(lost rows, duplicated rows, every column equal)`` of ``faulted`` against ``clean``."""
    a = pd.read_parquet(clean / "metrics.parquet")
    b = pd.read_parquet(faulted / "metrics.parquet")
    keys = [c for c in KEY_COLUMNS if c in a.columns]
    duplicated = int(b.duplicated(subset=keys).sum())
    merged = a[keys].merge(b[keys].drop_duplicates(), how="left", on=keys, indicator=True)
    lost = int((merged["_merge"] == "left_only").sum())
    ordered = [frame.sort_values(keys, na_position="first").reset_index(drop=True) for frame in (a, b)]
    try:
        pd.testing.assert_frame_equal(*ordered)
        equal = True
    except AssertionError:
        equal = False
    return lost, duplicated, equal


def _verdict(name: str, clean: Path, faulted: Path) -> bool:
    lost, duplicated, equal = compare(clean, faulted)
    ok = lost == 0 and duplicated == 0 and equal
    print(f"{name}: {lost} lost, {duplicated} duplicated, columns equal: {equal} -> {'OK' if ok else 'FAILED'}")
    return ok


def _resume_until_complete(sweep: Path, out: Path, env=None, extra: tuple[str, ...] = (), attempts: int = 3) -> None:
    for attempt in range(attempts):
        if _finish(_sweep(sweep, out, "--resume", *extra, env=env), f"resume {attempt + 1}") == 0:
            return


def kill_resume(sweep: Path, work: Path, kill_at: list[float]) -> bool:
    clean = work / "clean"
    began = time.perf_counter()
    _finish(_sweep(sweep, clean), "clean run")
    wall_s = time.perf_counter() - began
    print(f"  clean run: {wall_s:.0f} s")
    ok = True
    for fraction in kill_at:
        seconds = round(fraction * wall_s, 1)
        out = work / f"killed_{seconds:g}s"
        process = _sweep(sweep, out, new_group=True)
        time.sleep(seconds)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        parts = len(list((out / "parts").glob("*.json"))) if (out / "parts").is_dir() else 0
        print(f"  SIGKILL of the process group after {seconds:g} s: {parts} point(s) finished before")
        _resume_until_complete(sweep, out)
        ok &= _verdict(f"kill after {seconds:g} s + --resume", clean, out)
    return ok


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _alive_nodes(address: str, env: dict, want: int = 2, timeout_s: float = 60.0) -> list[str]:
    """IDs of the cluster's alive nodes, waiting until ``want`` have registered (or the timeout)."""
    probe = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
             "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))" % address)
    deadline = time.time() + timeout_s
    while True:
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
        nodes = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 and done.stdout.strip() else []
        if len(nodes) >= want or time.time() > deadline:
            return nodes
        time.sleep(2)


def ray_cluster(sweep: Path, work: Path, kill_worker_after: float) -> bool:
    ray = shutil.which("ray")
    if ray is None:
        raise SystemExit("the `ray` command is not on PATH")
    clean = work / "clean"
    _finish(_sweep(sweep, clean, "--local"), "clean run (--local)")
    short = Path(tempfile.mkdtemp(prefix="m4sc-rc-", dir="/tmp"))  # AF_UNIX socket paths stay short
    token = short / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
           "RAY_USAGE_STATS_ENABLED": "0"}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats"]
    worker = None
    try:
        subprocess.run([ray, "start", "--head", f"--port={port}", "--include-dashboard=false",
                        f"--temp-dir={short / 'head'}", *common], env=env, check=True, capture_output=True)
        # --block keeps the worker node's processes in one group we can SIGKILL, as a host dying would.
        worker = subprocess.Popen([ray, "start", f"--address={address}", "--block", *common], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        nodes = _alive_nodes(address, env)
        print(f"  cluster at {address}: {len(nodes)} alive node(s), token authentication on")
        out = work / "cluster"
        process = _sweep(sweep, out, "--address", address, env=env)
        time.sleep(kill_worker_after)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        print(f"  worker node SIGKILLed after {kill_worker_after:g} s")
        if _finish(process, "sweep through the cluster") != 0:
            _resume_until_complete(sweep, out, env=env, extra=("--address", address))
        ran_on = [json.loads(p.read_text()).get("ray_node") for p in (out / "parts").glob("*.json")]
        print(f"  points per node: {sorted(collections.Counter(node[:8] for node in ran_on if node).values())}")
        return len(nodes) == 2 and _verdict("two-node cluster, worker node killed", clean, out)
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True)
        shutil.rmtree(short, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="drill", required=True)
    for name in ("kill-resume", "ray-cluster"):
        drill = sub.add_parser(name)
        drill.add_argument("--sweep", type=Path, default=REPO / "scenarios" / "fig6.yaml")
        drill.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a temporary one)")
        if name == "kill-resume":
            drill.add_argument("--kill-at", type=float, nargs="+", default=[0.15, 0.6, 0.9], metavar="FRACTION",
                               help="moments of the kills, as fractions of the clean run's wall time")
        else:
            drill.add_argument("--kill-worker-after", type=float, default=20.0, metavar="S")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="m4sc-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"runs in {work}")
    if args.drill == "kill-resume":
        ok = kill_resume(args.sweep.resolve(), work, args.kill_at)
    else:
        ok = ray_cluster(args.sweep.resolve(), work, args.kill_worker_after)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
