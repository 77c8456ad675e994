"""HTTP backend: the kubelab jobs service inside the hub (``/hub/api/kubelab/``).

The notebook holds no Kubernetes credentials; every action goes through the service with the
notebook server's own JupyterHub API token (``JUPYTERHUB_API_TOKEN``). The REST API is written
down in ``docs/jobs.md``; this module maps its answers onto Python exceptions:

=======  ==========================================================
status   raised
=======  ==========================================================
400      :class:`~kubelab.jobs.spec.JobSpecError` naming the field
403      :class:`PermissionError` (scope, group policy or quota)
404      :class:`KeyError` (no such job for this user)
409      :class:`~kubelab.jobs.spec.JobSpecError` on ``name`` (already exists)
other    :class:`RuntimeError` with method, URL and the service's message
=======  ==========================================================
"""

from __future__ import annotations

import base64
import codecs
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import requests

from kubelab.jobs.backends.base import JobBackend, check_script_exists
from kubelab.jobs.spec import JobSpec, JobSpecError, JobStatus

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The longest long poll the service holds (``kubelab.jobs.handlers.MAX_WAIT_SECONDS``), minus a margin.
MAX_WAIT_SECONDS = 55
#: Total size of a script folder shipped as ``files`` (the service refuses more; docs/jobs.md).
MAX_FILES_BYTES = 1024 * 1024
# A message of the form "field: problem", used when a 400 body carries no "field" key.
_FIELD_MESSAGE = re.compile(r"^(?P<field>[A-Za-z_(][\w.\[\]()]*): (?P<problem>.+)$", re.S)


class HubBackend(JobBackend):
    """Talks to the jobs service through the hub's REST API.

    Args:
        api_url: The hub API URL, e.g. ``http://127.0.0.1:8081/hub/api``; defaults to
            ``$JUPYTERHUB_API_URL``.
        token: A JupyterHub API token with the ``custom:kubelab:jobs`` scope; defaults to
            ``$JUPYTERHUB_API_TOKEN``.
        retries: Attempts after the first one when the connection fails (the hub restarting,
            a proxy blip); only connection errors are retried, never an HTTP answer.
        backoff: First wait in seconds between attempts; it doubles each time, with jitter.
        timeout: Seconds to wait for an answer (streams that follow logs wait without limit).
        home: Where relative script paths point (the notebook's home), used only when the
            service asks for the script's folder to be sent (``options.files == "configmap"``).
        session: A ``requests.Session`` to reuse (connection pooling); one is made if omitted.
        check_script: Check before submitting that the script exists under ``home``; default:
            when running inside the user's notebook server (``JUPYTERHUB_SERVICE_PREFIX`` is set),
            or when ``home`` is given, since only then does this machine see the files job pods see.

    Raises:
        RuntimeError: No URL or no token was given and the environment has none.
    """

    def __init__(
        self,
        api_url: str | None = None,
        token: str | None = None,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 30.0,
        home: str | os.PathLike[str] | None = None,
        session: requests.Session | None = None,
        check_script: bool | None = None,
    ) -> None:
        api_url = api_url or os.environ.get("JUPYTERHUB_API_URL")
        token = token or os.environ.get("JUPYTERHUB_API_TOKEN")
        if not api_url:
            raise RuntimeError("HubBackend needs the hub API URL: pass api_url= or set JUPYTERHUB_API_URL")
        if not token:
            raise RuntimeError("HubBackend needs a JupyterHub API token: pass token= or set JUPYTERHUB_API_TOKEN")
        self.base_url = api_url.rstrip("/") + "/kubelab/"
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.home = Path(home) if home is not None else Path.home()
        if check_script is None:
            check_script = home is not None or bool(os.environ.get("JUPYTERHUB_SERVICE_PREFIX"))
        self.check_scripts = check_script
        self._session = session or requests.Session()
        # The token travels only in this header; it is never logged nor put in an error message.
        self._session.headers["Authorization"] = f"token {token}"
        self._options: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"HubBackend({self.base_url!r})"

    # -- the JobBackend interface -------------------------------------------------------------

    def options(self) -> dict[str, Any]:
        """What this user may choose (``GET options``); see docs/jobs.md for the shape.

        Raises:
            PermissionError: The token lacks the ``custom:kubelab:jobs`` scope.
            RuntimeError: The service failed or could not be reached.
        """
        try:
            self._options = self._request("GET", "options").json()
        except KeyError as e:
            # A 404 here means the hub answers but has no kubelab routes, not a missing job.
            raise RuntimeError(f"{self.base_url}options: this hub has no kubelab jobs service ({e})") from e
        return self._options

    def check_script(self, spec: JobSpec) -> None:
        """The script must exist where the notebook sees it: relative paths start at the home in
        the notebook and in job pods alike (a path means the same in both)."""
        if not self.check_scripts or spec.script is None:
            return
        check_script_exists(spec, self.home)

    def submit(self, spec: JobSpec) -> JobStatus:
        """Submit ``spec`` (``POST jobs``).

        A connection error is retried; if the first attempt did reach the service, the retry is
        answered 409 and the job that the first attempt created is returned instead of an error.

        Raises:
            JobSpecError: The spec or the catalogue policy refuses a field (400), or the name is
                already in use (409).
            PermissionError: Group policy or the GPU quota refuses the job (403).
            RuntimeError: The service failed or could not be reached.
        """
        body: dict[str, Any] = spec.to_dict()
        files = self._files_for(spec)
        if files is not None:
            body["files"] = files
        attempts: list[int] = []
        try:
            response = self._request("POST", "jobs", json=body, _attempts=attempts)
        except JobSpecError as e:
            if e.field == "name" and len(attempts) > 1 and getattr(e, "status", None) == 409:
                # Our own earlier attempt created it before the connection dropped.
                return self.get(spec.name)
            raise
        return JobStatus.from_dict(response.json())

    def list(self, all_users: bool = False) -> list[JobStatus]:
        """The user's jobs, newest first (``GET jobs``; ``all_users`` needs the admin scope).

        Raises:
            PermissionError: The token lacks the scope (or the admin scope for ``all_users``).
            RuntimeError: The service failed or could not be reached.
        """
        params = {"all": "1"} if all_users else None
        data = self._request("GET", "jobs", params=params).json()
        return [JobStatus.from_dict(j) for j in data.get("jobs", [])]

    def get(self, name: str) -> JobStatus:
        """One job's status (``GET jobs/{name}``).

        Raises:
            KeyError: No such job for this user.
            RuntimeError: The service failed or could not be reached.
        """
        return JobStatus.from_dict(self._request("GET", f"jobs/{quote(name, safe='')}").json())

    def wait_briefly(self, name: str, seconds: float) -> JobStatus:
        """One long poll (``GET jobs/{name}?wait=<s>``): the service answers as soon as the job
        ended (from its watch), or after ``seconds`` (at most the service's 60).

        Raises:
            KeyError: No such job for this user.
            RuntimeError: The service failed or could not be reached.
        """
        wait = max(0, min(int(seconds), MAX_WAIT_SECONDS))
        return JobStatus.from_dict(self._request("GET", f"jobs/{quote(name, safe='')}?wait={wait}",
                                                 timeout=self.timeout + wait).json())

    def logs(self, name: str, rank: int = 0, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        """Log lines of one rank, streamed line by line (``GET jobs/{name}/logs``).

        The request is made when iteration starts; with ``follow`` the iterator ends when the
        rank ends. If the service ends a follow while the rank has not ended (it gives up
        waiting for a pod that is still starting), the stream is opened again, skipping the
        lines already yielded, so a follow started right after ``submit`` sees the whole run.
        Closing the iterator (``.close()`` or leaving a ``for`` loop) closes the connection,
        which ends the service's follow.

        Raises:
            KeyError: No such job (or no logs any more for that rank).
            JobSpecError: ``rank`` is outside ``0..workers-1``.
            RuntimeError: The service failed or could not be reached.
        """
        received = 0
        pause = self.backoff
        while True:
            params: dict[str, str] = {"rank": str(rank), "follow": "1" if follow else "0"}
            # Resuming asks for the whole log and skips what was seen: a tail would not line up.
            if tail is not None and not received:
                params["tail"] = str(tail)
            skip = received
            response = self._request(
                "GET",
                f"jobs/{quote(name, safe='')}/logs",
                params=params,
                stream=True,
                # Following has no end we can bound; the connect timeout still applies.
                timeout=(self.timeout, None) if follow else self.timeout,
            )
            try:
                for line in _lines(response.iter_content(chunk_size=None)):
                    if skip:
                        skip -= 1
                        continue
                    received += 1
                    yield line
            except requests.RequestException as e:
                raise RuntimeError(f"logs of job {name!r} rank {rank}: stream broke: {e}") from e
            finally:
                response.close()
            if not follow or (tail is not None and received) or self._rank_ended(name, rank):
                return
            time.sleep(pause)
            pause = min(10.0, pause * 2)

    def _rank_ended(self, name: str, rank: int) -> bool:
        """Whether ``rank`` of job ``name`` has ended (or the job has, or is gone)."""
        try:
            status = self.get(name)
        except KeyError:
            return True
        if status.done:
            return True
        ranks = [r for r in status.ranks if r.rank == rank]
        return bool(ranks) and ranks[0].phase in ("Succeeded", "Failed", "Cancelled")

    def cancel(self, name: str) -> None:
        """Stop the job's ranks (``POST jobs/{name}/cancel``); it stays listed, Cancelled, with
        its logs and metrics, until :meth:`delete`.

        Raises:
            KeyError: No such job for this user.
            RuntimeError: The service failed or could not be reached.
        """
        try:
            self._request("POST", f"jobs/{quote(name, safe='')}/cancel")
        except KeyError as e:
            if str(e.args[0] if e.args else "").startswith("no job"):
                raise
            # A service from before job history has no cancel route (tornado's own 404 page):
            # there, DELETE was the cancel.
            self._request("DELETE", f"jobs/{quote(name, safe='')}")

    def delete(self, name: str) -> None:
        """Remove the job and everything it created (``DELETE jobs/{name}``).

        Raises:
            KeyError: No such job for this user.
            RuntimeError: The service failed or could not be reached.
        """
        self._request("DELETE", f"jobs/{quote(name, safe='')}")

    def metrics(self, name: str) -> dict[str, Any]:
        """Every series of the job (``GET jobs/{name}/metrics``); ``message`` says when there are none.

        Raises:
            KeyError: No such job for this user.
            RuntimeError: The service failed or could not be reached.
        """
        return self._request("GET", f"jobs/{quote(name, safe='')}/metrics").json()

    def follow_metrics(self, name: str, seq: int = 0, *, poll: float = 1.0) -> Iterator[dict[str, Any]]:
        """The job's metrics as they arrive, from one streamed request (``?follow=1``): one JSON
        line per batch, the first a whole snapshot, the last ``{"done": true}``. A stream that
        breaks before the end is opened again from the last ``seq`` (no faster than ``poll``).

        Raises:
            KeyError: No such job for this user.
            RuntimeError: The service failed or could not be reached.
        """
        pause = max(1.0, poll)
        while True:
            response = self._request("GET", f"jobs/{quote(name, safe='')}/metrics",
                                     params={"follow": "1", "since": str(seq)}, stream=True,
                                     timeout=(self.timeout, None))
            try:
                for line in _lines(response.iter_content(chunk_size=None)):
                    if not line.strip():
                        continue
                    item = json.loads(line)
                    seq = int(item.get("seq") or seq)
                    yield item
                    if item.get("done"):
                        return
            except (requests.RequestException, ValueError) as e:
                log.info("metrics stream of %s broke (%s); reopening", name, e)
            finally:
                response.close()
            time.sleep(pause)

    # -- sweeps --------------------------------------------------------------------------------

    def sweep(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a sweep (``POST sweeps``).

        Raises:
            JobSpecError: A field is refused (400), or the name is taken (409).
            PermissionError: One trial could never run (403).
            RuntimeError: The service failed or could not be reached.
        """
        return self._request("POST", "sweeps", json=body).json()

    def sweeps(self, all_users: bool = False) -> list[dict[str, Any]]:
        """Every sweep of the user (``GET sweeps``)."""
        return self._request("GET", "sweeps", params={"all": "1"} if all_users else None).json().get("sweeps", [])

    def get_sweep(self, name: str, wait: float = 0) -> dict[str, Any]:
        """One sweep (``GET sweeps/{name}[?wait=s]``).

        Raises:
            KeyError: No such sweep for this user.
        """
        wait = max(0, min(int(wait), MAX_WAIT_SECONDS))
        path = f"sweeps/{quote(name, safe='')}" + (f"?wait={wait}" if wait else "")
        return self._request("GET", path, timeout=self.timeout + wait).json()

    def cancel_sweep(self, name: str) -> dict[str, Any]:
        """Stop the sweep (``POST sweeps/{name}/cancel``)."""
        return self._request("POST", f"sweeps/{quote(name, safe='')}/cancel").json()

    def delete_sweep(self, name: str) -> dict[str, Any]:
        """Remove the sweep (``DELETE sweeps/{name}``)."""
        return self._request("DELETE", f"sweeps/{quote(name, safe='')}").json()

    # -- helpers ------------------------------------------------------------------------------

    def _files_for(self, spec: JobSpec) -> dict[str, str] | None:
        """The script's folder as ``{path relative to home: base64}`` when the service needs it.

        Only when the service says job pods cannot see the home (``files == "configmap"``). A script
        at the top of the home ships the Python files beside it, never the whole home (notebooks,
        data); folders listed in ``spec.inputs`` are not shipped (the job fetches them itself).

        Raises:
            JobSpecError: The folder is larger than 1 MiB (the message names ``inputs``), or the
                script is not under the home.
        """
        options = self._options if self._options is not None else self.options()
        if options.get("files") != "configmap" or spec.script is None:
            return None
        home = self.home.resolve()
        script = Path(spec.script).expanduser()
        script = script if script.is_absolute() else self.home / script
        try:
            script.resolve().relative_to(home)
        except ValueError:
            raise JobSpecError("script", f"{spec.script} is not under the home {self.home}; job pods "
                               "cannot see it here, only the script's folder under the home is shipped") from None
        folder = script.resolve().parent
        inputs = [(p if p.is_absolute() else self.home / p).resolve() for p in map(Path, spec.inputs)]
        at_top = folder == home
        files: dict[str, str] = {}
        total = 0
        for path in sorted(folder.glob("*.py") if at_top else folder.rglob("*")):
            parts = path.relative_to(folder).parts
            # Caches and hidden folders (.git, .ipynb_checkpoints) are not part of the program.
            if not path.is_file() or any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            if any(path.resolve().is_relative_to(i) for i in inputs):
                continue
            data = path.read_bytes()
            total += len(data)
            if total > MAX_FILES_BYTES:
                raise JobSpecError("files", f"the script's folder {folder} holds more than 1 MiB; job pods cannot "
                                   "mount your home, so at most 1 MiB is shipped with the job: move data out of "
                                   "the script's folder and list it in inputs=[...] (each rank fetches it from "
                                   "your home when it starts; docs/jobs.md)")
            files[str(path.resolve().relative_to(home))] = base64.b64encode(data).decode()
        return files

    def _request(
        self,
        method: str,
        path: str,
        *,
        _attempts: list[int] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One call to the service, retried on connection errors, errors mapped (module doc)."""
        url = self.base_url + path
        kwargs.setdefault("timeout", self.timeout)
        attempts = _attempts if _attempts is not None else []

        def attempt() -> requests.Response:
            attempts.append(1)
            return self._session.request(method, url, **kwargs)

        try:
            response = _with_backoff(attempt, self.retries, self.backoff)
        except requests.Timeout as e:
            raise TimeoutError(f"{method} {url}: no answer within {self.timeout} s") from e
        except requests.RequestException as e:
            raise RuntimeError(
                f"{method} {url}: cannot reach the kubelab jobs service after {len(attempts)} attempt(s): {e}"
            ) from e
        if response.status_code < 400:
            return response
        raise _error_for(method, url, response)


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Split a byte stream into lines as the chunks arrive (UTF-8, as the service declares).

    Not ``Response.iter_lines``: with a delimiter it yields a spurious empty line whenever a
    chunk ends exactly at one, which is every chunk of a followed log.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    for chunk in chunks:
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line.rstrip("\r")
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending.rstrip("\r")


def _with_backoff(call: Callable[[], T], retries: int, backoff: float) -> T:
    """Run ``call``, retrying connection errors with exponential backoff and full jitter.

    Only ``requests.ConnectionError`` is retried: the request did not get an answer, and the
    service's operations are idempotent or detect a repeat (409 on submit).
    """
    for attempt in range(retries + 1):
        try:
            return call()
        except requests.ConnectionError as e:
            if attempt == retries:
                raise
            # Full jitter spreads many notebooks reconnecting after a hub restart.
            delay = random.uniform(0, backoff * 2**attempt)  # noqa: S311 - jitter, not crypto
            log.info("kubelab jobs service unreachable (%s); retrying in %.2f s", e.__class__.__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises


def _error_for(method: str, url: str, response: requests.Response) -> Exception:
    """The exception for an error answer, carrying the service's message."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        # Not the service's JSON (a proxy's HTML page, say): keep a short excerpt for context.
        body = {"message": response.text[:300].strip() or response.reason}
    message = str(body.get("message") or response.reason)
    error: Exception
    if status in (400, 409):
        field = body.get("field")
        problem = message
        match = _FIELD_MESSAGE.match(message)
        if match and (field is None or match.group("field") == field):
            field, problem = match.group("field"), match.group("problem")
        if status == 409:
            field = "name"
        error = JobSpecError(str(field or "(body)"), problem)
        error.status = status  # type: ignore[attr-defined]
    elif status == 403:
        error = PermissionError(message)
    elif status == 404:
        error = KeyError(message)
    else:
        error = RuntimeError(f"{method} {url}: {status} {response.reason}: {message}")
    return error
