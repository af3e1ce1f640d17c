"""Executors: map a function over units, on this machine or on a Ray cluster.

    ex = LocalExecutor(workers=4)              # processes (concurrent.futures); 1 = in this process
    ex = RayExecutor(address=None, workers=4)  # ray.init(): a local Ray, or RAY_ADDRESS / --address
    for item, result in ex.map(fn, items):     # as they finish; result is the value or the exception
        ...
    ex.close()

The stage code is the same under both: ``fn`` is a module-level function taking plain
arguments. Each worker process keeps what it loaded (the sentence encoder, the last index)
between the units it runs, so a model is loaded once per worker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from xling.errors import XlingError

RAY_TIMEOUT = 10.0  # seconds a Ray address has to answer


class Executor(Protocol):
    name: str

    def map(self, fn: Callable, items: list[tuple], gpu: bool = False) -> Iterator[tuple[tuple, Any]]:
        """``(args, result or exception)`` for ``fn(*args)`` of every item, as they finish;
        ``gpu``: the work can use a GPU when the engine has one."""

    def close(self) -> None: ...


def _init_worker(threads: int) -> None:
    """Each pool process gets its share of the cores (torch and faiss)."""
    import faiss
    import torch

    torch.set_num_threads(threads)
    faiss.omp_set_num_threads(threads)


class LocalExecutor:
    """Processes on this machine; ``workers=1`` runs in this process (no start-up cost)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or min(os.cpu_count() or 1, 8))
        self._pool = None

    def map(self, fn: Callable, items: list[tuple], gpu: bool = False) -> Iterator[tuple[tuple, Any]]:
        if self.workers == 1 or len(items) <= 1:
            for args in items:
                try:
                    yield args, fn(*args)
                except Exception as e:  # noqa: BLE001 - reported by the caller with the unit's name
                    yield args, e
            return
        import concurrent.futures as cf
        import multiprocessing

        if self._pool is None:
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_init_worker, initargs=(threads,))
        futures = {self._pool.submit(fn, *args): args for args in items}
        for fut in cf.as_completed(futures):
            try:
                yield futures[fut], fut.result()
            except Exception as e:  # noqa: BLE001 - a worker's exception or a dead worker (BrokenProcessPool)
                yield futures[fut], e

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


def _check_reachable(address: str, timeout: float) -> None:
    """A Ray address ``[ray://]host:port`` answers within ``timeout`` seconds: it accepts a TCP
    connection and replies to an HTTP/2 preface (Ray's GCS and client server speak gRPC) with
    a SETTINGS frame. A port that accepts and stays silent would make ``ray.init`` wait long."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise XlingError(f"Ray address {address!r}: expected host:port, ray://host:port or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("0", "false", ""):
                conn.sendall(H2_PREFACE)
                frame = conn.recv(9)  # an HTTP/2 frame header: length (3), type (1), flags, stream
                if len(frame) < 4 or frame[3] != 0x4:
                    raise XlingError(f"Ray address {address}: answers, but not as a Ray cluster (no gRPC reply)")
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else e.strerror or str(e)
        raise XlingError(f"Ray address {address}: no answer within {timeout:g} s ({why})") from None


class RayExecutor:
    """Ray tasks: a local Ray instance when no address is given, else the cluster at
    ``address`` (or ``RAY_ADDRESS``). Work marked ``gpu`` asks for a GPU when the cluster has one."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, timeout: float = RAY_TIMEOUT) -> None:
        try:
            import ray
        except ImportError:
            raise XlingError('--engine ray needs Ray: pip install "xling[ray]"') from None
        self._ray = ray
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            _check_reachable(address, timeout)
        self._started = not ray.is_initialized()
        if self._started:
            kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if not address:
                kw["num_cpus"] = workers or os.cpu_count()
            try:
                ray.init(address=address, **kw)
            except (ConnectionError, RuntimeError, TimeoutError) as e:
                raise XlingError(f"Ray address {address or 'local'}: cannot connect ({' '.join(str(e).split())[:200]})") from None
        self._gpus = ray.cluster_resources().get("GPU", 0) > 0
        self._tasks: dict[Callable, Any] = {}

    def map(self, fn: Callable, items: list[tuple], gpu: bool = False) -> Iterator[tuple[tuple, Any]]:
        ray = self._ray
        if fn not in self._tasks:
            self._tasks[fn] = ray.remote(fn)
        task = self._tasks[fn].options(num_gpus=1) if gpu and self._gpus else self._tasks[fn]
        refs = {task.remote(*args): args for args in items}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            args = refs.pop(done[0])
            try:
                yield args, ray.get(done[0])
            except ray.exceptions.RayTaskError as e:
                yield args, e.cause if isinstance(e.cause, BaseException) else e
            except ray.exceptions.RayError as e:  # a worker died, the node was lost ...
                yield args, e

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(engine: str, workers: int | None = None, address: str | None = None) -> Executor:
    if engine == "local":
        if address:
            raise XlingError("--address joins a Ray cluster: use it with --engine ray")
        return LocalExecutor(workers)
    if engine == "ray":
        return RayExecutor(address, workers)
    raise XlingError(f"unknown engine {engine!r}; valid: local, ray")
