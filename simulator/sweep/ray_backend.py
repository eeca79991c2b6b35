"""The Ray backend of a sweep: an embedded local Ray bound to loopback (token in the output folder) or
a user's cluster, and the points as remote tasks retried on worker loss."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable

from simulator.errors import UserError
from simulator.sweep.grid import SweepResources
from simulator.sweep.point import execute_point

__all__ = ["ray_session", "run_on_ray"]

#: AF_UNIX socket paths are limited to 107 bytes; Ray puts sockets ~70 characters below its temp dir.
_RAY_SOCKET_MARGIN = 72
_UNIX_PATH_MAX = 107


def _ray_temp_dir(out: Path) -> tuple[Path, bool]:
    """``<out>/ray_tmp`` when Ray's socket paths below it fit AF_UNIX's limit; else a short /tmp folder.
    Returns the folder and whether it is a private temporary folder to delete afterwards."""
    preferred = (out / "ray_tmp").resolve()
    if len(str(preferred)) + _RAY_SOCKET_MARGIN <= _UNIX_PATH_MAX:
        return preferred, False
    return Path(tempfile.mkdtemp(prefix="m4sc-ray-", dir="/tmp")), True


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no usable CUDA: no GPU
        return 0


@contextmanager
def _loopback_only():
    """Keep an embedded Ray on 127.0.0.1. Ray turns ``_node_ip_address="127.0.0.1"`` into the address
    it routes to a public DNS server from; with its "cluster" switch off it uses the loopback address
    instead. The switch is read by this process (patched) and by the GCS, raylet and workers that
    ray.init starts (environment variable, inherited at their start)."""
    from ray._private import ray_constants

    variable = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved_env, saved_flag = os.environ.get(variable), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[variable] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = saved_env


_RAY_TOKEN_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _reset_ray_token_cache() -> None:
    from ray._raylet import AuthenticationTokenLoader

    AuthenticationTokenLoader.instance().reset_cache()


@contextmanager
def _token_in(folder: Path):
    """Token authentication for the embedded Ray with its token in ``folder/auth_token``.

    Ray 2.5x turns token authentication on for every new local cluster and, when it finds no token,
    writes a new one to ``~/.ray/auth_token``, where it stays and is picked up by every later Ray
    of that user. Here the token lives with the sweep's Ray files (``RAY_AUTH_TOKEN_PATH``, which
    Ray reads before ``~/.ray``). A user's own ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH``
    wins: then nothing changes. Yields the token file, or None."""
    if any(os.environ.get(name) for name in _RAY_TOKEN_VARIABLES):
        yield None
        return
    token_path = folder / "auth_token"
    descriptor = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    _reset_ray_token_cache()
    try:
        yield token_path
    finally:
        for name in _RAY_TOKEN_VARIABLES:  # ray.init sets RAY_AUTH_MODE=token for its children
            os.environ.pop(name, None)
        _reset_ray_token_cache()


@contextmanager
def ray_session(address: str | None, out: Path, resources: SweepResources):
    """Connect to ``address`` or start an embedded local Ray bound to loopback; always shut down.

    Yields a dict describing the session (``address``, ``mode``, ``num_cpus``, ``num_gpus``)."""
    import logging

    import ray

    if ray.is_initialized():
        raise UserError("Ray is already initialised in this process")
    # No usage reporting (it would try to reach an outside address).
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    private_tmp = None
    info: dict[str, Any]
    with ExitStack() as session:  # the token's setting ends after ray.shutdown
        try:
            if address:
                try:
                    context = ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
                except Exception as err:  # noqa: BLE001 - ConnectionError, ValueError, RuntimeError ...
                    hint = "" if os.environ.get("RAY_AUTH_MODE") == "token" else \
                        " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token in this environment)"
                    raise UserError(f"--address: cannot connect to Ray at {address}: {type(err).__name__}: {err}{hint}") from None
                info = {"mode": "cluster", "address": address}
            else:
                gpus = _gpu_count() if resources.num_gpus > 0 else 0
                if resources.num_gpus > gpus:
                    raise UserError(f"resources.num_gpus: {resources.num_gpus:g} per point, but this machine has "
                                    f"{gpus} GPU(s) (connect to a cluster with --address)")
                cpus = _cpu_count()
                if resources.num_cpus > cpus:
                    raise UserError(f"resources.num_cpus: {resources.num_cpus:g} per point, but this machine has {cpus} CPU(s)")
                temp_dir, is_private = _ray_temp_dir(out)
                private_tmp = temp_dir if is_private else None
                temp_dir.mkdir(parents=True, exist_ok=True)
                token_path = session.enter_context(_token_in(temp_dir))
                with _loopback_only():
                    context = ray.init(address="local", num_cpus=cpus, num_gpus=gpus, include_dashboard=False,
                                       _node_ip_address="127.0.0.1", _temp_dir=str(temp_dir), log_to_driver=False,
                                       logging_level=logging.ERROR, configure_logging=True)
                info = {"mode": "local", "address": getattr(context, "address_info", {}).get("address"),
                        "num_cpus": cpus, "num_gpus": gpus, "temp_dir": str(temp_dir),
                        "auth_token": None if token_path is None else str(token_path)}
            info["ray_version"] = ray.__version__
            yield info
        finally:
            if ray.is_initialized():
                ray.shutdown()
            if private_tmp is not None:
                shutil.rmtree(private_tmp, ignore_errors=True)


def run_on_ray(specs: list[dict], resources: SweepResources, max_retries: int, max_parallel: int,
                on_outcome: Callable[[dict], None]) -> None:
    import ray

    remote = ray.remote(execute_point).options(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus,
                                               max_retries=max_retries, retry_exceptions=False)
    queue = list(specs)
    pending: dict = {}
    try:
        while queue or pending:
            while queue and len(pending) < max_parallel:
                spec = queue.pop(0)
                pending[remote.remote(spec)] = spec
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                spec = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as err:  # noqa: BLE001 - worker lost beyond max_retries, cancelled ...
                    outcome = {"point_id": spec["point_id"], "status": "error", "rows": [], "info": {},
                               "error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                               "wall_s": None}
                on_outcome(outcome)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
