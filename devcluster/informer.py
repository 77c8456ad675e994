"""A watch-backed cache of one resource kind: list once, then watch from its resourceVersion.

On a 410 Gone or a dropped connection it lists again and reports what vanished
meanwhile as DELETED, so callers see every change exactly as a stream of events.
Objects are plain dicts (the API's JSON), which is what the pure builders take.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], None]
WATCH_SECONDS = 240


def object_key(obj: dict[str, Any]) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects)."""
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


class Informer:
    """Keep ``store`` in sync with the API and call ``handler(event_type, obj)`` for each change.

    Args:
        name: For logs.
        list_func: A client ``list_*`` method (called with ``watch``/``_preload_content``).
        handler: Called from the informer's thread for ADDED, MODIFIED and DELETED.
        **kwargs: Passed to ``list_func`` (e.g. ``field_selector``).
    """

    def __init__(self, name: str, list_func: Callable[..., Any], handler: Handler, **kwargs: Any) -> None:
        self.name = name
        self.list_func = list_func
        self.handler = handler
        self.kwargs = kwargs
        self.store: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer-{name}", daemon=True)

    def start(self) -> None:
        """Start listing and watching in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current watch call returns."""
        self.stopped.set()

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached object, or None."""
        with self.lock:
            return self.store.get(key)

    def items(self) -> list[dict[str, Any]]:
        """A snapshot of all cached objects."""
        with self.lock:
            return list(self.store.values())

    def _emit(self, kind: str, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        with self.lock:
            if kind == "DELETED":
                self.store.pop(key, None)
            else:
                self.store[key] = obj
        try:
            self.handler(kind, obj)
        except Exception:  # noqa: BLE001 - thread top level: log and keep the watch alive
            log.exception("%s: handler failed for %s %s", self.name, kind, key)

    def _relist(self) -> str:
        resp = self.list_func(_preload_content=False, **self.kwargs)
        data = json.loads(resp.data)
        fresh = {object_key(o): o for o in data["items"]}
        with self.lock:
            gone = [o for k, o in self.store.items() if k not in fresh]
        for obj in gone:
            self._emit("DELETED", obj)
        for obj in fresh.values():
            with self.lock:
                old = self.store.get(object_key(obj))
            if old is None or old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._emit("MODIFIED" if old else "ADDED", obj)
        self.synced.set()
        return data["metadata"]["resourceVersion"]

    def _watch(self, rv: str) -> str | None:
        """Watch from ``rv``; return the last version seen, or None when a relist is needed."""
        resp = self.list_func(
            watch=True, resource_version=rv, timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True,
            _preload_content=False, **self.kwargs,
        )
        try:
            for line in iter_resp_lines(resp):
                if self.stopped.is_set():
                    return rv
                if not line:
                    continue
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    log.info("%s: watch error %s, relisting", self.name, obj.get("message"))
                    return None
                rv = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self._emit(event["type"], obj)
        finally:
            resp.close()
            resp.release_conn()
        return rv

    def _run(self) -> None:
        rv: str | None = None
        while not self.stopped.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                rv = self._watch(rv)
            except (ApiException, urllib3.exceptions.HTTPError, OSError, ValueError) as e:
                log.warning("%s: %s; relisting in 1s", self.name, e)
                rv = None
                time.sleep(1)
