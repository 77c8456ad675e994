"""A work queue keyed by object, with retries and exponential backoff (client-go's workqueue).

Work that must happen when the cluster changes (record a job's end, tear down its ranks, start
the next trial of a sweep) is not done in the watch's event handler, where an error could only be
logged and dropped. The handler only :meth:`WorkQueue.add`\\ s the object's key; workers call
``reconcile(key)``, which reads the current state from the caches and converges it:

* a key is queued at most once, however many events arrive for it, and never reconciled by two
  workers at once (a change during a reconcile queues it again, to run after);
* a reconcile that raises one of ``retry_on`` is retried after an exponentially growing,
  jittered delay (dask-gateway's ``put_backoff``); success resets the key's delay;
* ``add_after`` schedules a later look (a deadline, a periodic check).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

log = logging.getLogger("kubelab.core.workqueue")


class WorkQueue:
    """Keys waiting to be reconciled, and the workers that reconcile them.

    Args:
        name: For log lines.
        reconcile: ``async reconcile(key)``; raise one of ``retry_on`` to be retried with backoff.
        retry_on: Exceptions that mean "try again later" (API errors, timeouts).
        workers: Concurrent reconciles.
        base_delay: First retry delay in seconds.
        max_delay: Upper bound of the retry delay.

    Attributes:
        retries: Key → failed attempts since its last success.
    """

    def __init__(
        self,
        name: str,
        reconcile: Callable[[str], Awaitable[None]],
        *,
        retry_on: tuple[type[BaseException], ...],
        workers: int = 4,
        base_delay: float = 0.1,
        max_delay: float = 30.0,
    ) -> None:
        self.name = name
        self._reconcile = reconcile
        self._retry_on = retry_on
        self._workers = workers
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.retries: dict[str, int] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        """Start the workers (once)."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._work(), name=f"kubelab-{self.name}-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        """Cancel the workers and every delayed add."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def add(self, key: str) -> None:
        """Queue ``key`` now (a no-op if it is queued already)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._processing:
            self._dirty.add(key)  # reconcile again once the running one finishes
            return
        if key not in self._queued:
            self._queued.add(key)
            self._idle.clear()
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        """Queue ``key`` in ``delay`` seconds (an earlier pending add wins)."""
        if key in self._queued:
            return
        existing = self._timers.get(key)
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if existing is not None and existing.when() <= when:
            return
        if existing is not None:
            existing.cancel()
        self._idle.clear()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def forget(self, key: str) -> None:
        """Reset ``key``'s backoff (after it converged)."""
        self.retries.pop(key, None)

    def backoff(self, key: str) -> float:
        """The delay before the next retry of ``key`` (and count the failure)."""
        attempts = self.retries[key] = self.retries.get(key, 0) + 1
        delay = min(self.base_delay * 2 ** (attempts - 1), self.max_delay)
        return delay * (0.5 + random.random())  # noqa: S311 - jitter, not crypto

    async def join(self, timeout: float | None = None) -> None:
        """Wait until nothing is queued, delayed or running (tests and shutdown)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    @property
    def pending(self) -> int:
        """Keys queued, delayed or being reconciled."""
        return len(self._queued | self._processing | set(self._timers))

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _check_idle(self) -> None:
        if not (self._queued or self._processing or self._timers):
            self._idle.set()

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._processing.add(key)
            retry: float | None = None
            try:
                await self._reconcile(key)
                self.forget(key)
            except self._retry_on as e:
                retry = self.backoff(key)
                log.warning("%s: reconcile %s failed (%s); retry %d in %.2f s", self.name, key, e,
                            self.retries[key], retry)
            except Exception:  # noqa: BLE001 - a bug in one reconcile must not stop the queue's worker
                retry = self.backoff(key)
                log.exception("%s: reconcile %s raised; retry %d in %.2f s", self.name, key, self.retries[key], retry)
            finally:
                self._processing.discard(key)
            if retry is not None:
                self._dirty.discard(key)  # the retry will read the newest state anyway
                self.add_after(key, retry)
            elif key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            self._check_idle()
