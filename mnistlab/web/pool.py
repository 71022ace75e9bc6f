"""CPU work of the web server, off the event loop and bounded: a few jobs at a time, a few more
waiting, and beyond that an immediate 503 with Retry-After instead of a queue without end.

Two lanes: `light` (a drawn digit, a photo up to the reader's working size, feature maps) and
`heavy` (big photos, attacks). Memory is bounded because each lane runs at most `workers` jobs
at once and admits at most `workers + waiting`; a job the client gave up on (hung up, timed
out, server stopping) is dropped if it has not started, and keeps its slot until it ends if it
has (a torch call cannot be interrupted), so the bound holds for abandoned work too.

The worker threads are daemons and waiting on them never blocks: when the server stops, the
requests waiting here are cancelled at once and a job still running does not hold the process
(`mnistlab serve` exits without joining it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import queue
import threading
from collections.abc import Callable
from typing import Any

from mnistlab.errors import MnistlabError

POLL_S = 0.25  # how often a waiting request checks whether its client is still there


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; absent on musl, macOS
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()


def trim_memory() -> None:
    """Hand freed heap memory back to the OS. A 40 MP decode frees ~0.2 GB in PIL's 16 MB blocks,
    which glibc keeps in the worker thread's arena (measured: +138 MiB held after 16 big
    uploads); malloc_trim returns it, in a few ms."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class Busy(MnistlabError):
    """The lane is full, or the job ran past its time: HTTP 503 with a Retry-After header."""

    status = 503

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class ClientGone(MnistlabError):
    """The client hung up while its job waited: nobody reads the answer (nginx's 499)."""

    status = 499


class Lane:
    """At most `workers` jobs running and `waiting` more queued; `run` answers Busy beyond that."""

    def __init__(
        self,
        name: str,
        workers: int,
        waiting: int,
        timeout_s: float,
        retry_after: int = 1,
        after_job: Callable[[], None] | None = None,
    ):
        if workers < 1 or waiting < 0 or timeout_s <= 0:
            raise ValueError("a lane needs workers >= 1, waiting >= 0 and a positive timeout")
        self.name = name
        self.workers = workers
        self.waiting = waiting
        self.timeout_s = timeout_s
        self.retry_after = retry_after
        self.after_job = after_job  # run in the worker thread after each job (heavy: trim_memory)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._admitted = 0  # running + queued, released when a job ends or is dropped unstarted
        self._running = 0
        self._threads: list[threading.Thread] = []
        self.refused = 0  # answered Busy because the lane was full
        self.timed_out = 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "workers": self.workers,
                "waiting_max": self.waiting,
                "running": self._running,
                "queued": self._admitted - self._running,
                "refused": self.refused,
                "timed_out": self.timed_out,
            }

    def _release_dropped(self, future: concurrent.futures.Future) -> None:
        # Only a job cancelled before it started frees its slot here; one that ran frees it in
        # _worker, after its bookkeeping, so that stats() never sees a finished job half-released.
        if future.cancelled():
            with self._lock:
                self._admitted -= 1

    def _worker(self) -> None:
        while True:
            future, fn, args = self._jobs.get()
            if not future.set_running_or_notify_cancel():
                continue  # dropped before it started; its slot was released by the cancel
            with self._lock:
                self._running += 1
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as e:  # handed to the request, which turns it into an answer
                error = e
            del fn, args  # the job's arguments (an upload's bytes) go before the next wait
            try:
                if self.after_job is not None:
                    self.after_job()
            finally:
                # The slot is freed before the answer is: a client that has its answer sees the
                # lane as idle again (and a job holds its slot until its clean-up is over).
                with self._lock:
                    self._running -= 1
                    self._admitted -= 1
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)
                del future, result, error

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Queue `fn(*args)`; raises Busy at once when the lane is full."""
        with self._lock:
            if self._admitted >= self.workers + self.waiting:
                self.refused += 1
                raise Busy(
                    f"server busy: {self.workers} {self.name} job(s) running and {self.waiting} waiting; "
                    f"try again in {self.retry_after} s",
                    self.retry_after,
                )
            self._admitted += 1
            if len(self._threads) < self.workers:
                t = threading.Thread(
                    target=self._worker, name=f"mnistlab-{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(t)
                t.start()
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.add_done_callback(self._release_dropped)
        self._jobs.put((future, fn, args))
        return future

    async def run(self, fn: Callable[..., Any], *args: Any, is_disconnected: Callable | None = None) -> Any:
        """`fn(*args)` in this lane; Busy when full or past `timeout_s`, ClientGone when the client left."""
        future = self.submit(fn, *args)
        waiter = asyncio.wrap_future(future)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    with self._lock:
                        self.timed_out += 1
                    raise Busy(
                        f"server busy: the request took longer than {self.timeout_s:.0f} s; try again later",
                        self.retry_after,
                    )
                done, _ = await asyncio.wait({waiter}, timeout=min(POLL_S, left))
                if done:
                    return waiter.result()
                if is_disconnected is not None and await is_disconnected():
                    raise ClientGone("the client closed the connection")
        except asyncio.CancelledError:
            # uvicorn cancels what is still running once its shutdown grace period is over: the
            # client gets a 503 instead of a 500 and a traceback in the log.
            raise Busy("server stopping: try again when it is back", 5) from None
        finally:
            if not waiter.done():
                waiter.cancel()  # drops the job if it has not started (and frees its slot)
