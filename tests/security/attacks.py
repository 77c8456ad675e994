"""Shared pieces of the attack suite: the tally it prints, object snapshots, and home writers.

Every attack goes through :meth:`Tally.attack`, which asserts the answer (status and message)
and that the namespace holds exactly the objects it held before, then counts the request as
tried, refused (a 4xx) and created (objects it left behind, which must stay 0). The conftest
prints the counts at the end of the session; ``docs/security.md`` records them.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import kubernetes
import requests

from tests.claims import exists, write_into_claim  # noqa: F401 - the suite's modules import them from here

#: Kinds whose objects an attack could leave behind (everything kubelab or KubeSpawner creates).
KINDS = ("ConfigMap", "Secret", "Service", "Job", "Pod", "PersistentVolumeClaim")


@dataclass
class Tally:
    """What the suite tried, and how it ended."""

    tried: int = 0
    refused: int = 0
    created: int = 0
    by_class: dict[str, list[int]] = field(default_factory=dict)

    def attack(self, what: str, send: Callable[[], requests.Response], *, status: int, message: str,
               snapshot: Callable[[], set[str]], settle: float = 0.0) -> requests.Response:
        """Send one attack and assert it was refused with ``status`` and ``message``, creating nothing.

        Args:
            what: The attack class (``colliding names``, ``malformed input``...), for the counts.
            send: Sends the request.
            status: The expected HTTP status.
            message: A regular expression the answer's message must contain.
            snapshot: Lists the namespace's objects (:func:`objects`).
            settle: Seconds to wait before the second snapshot (a spawn refused after it started).
        """
        before = snapshot()
        response = send()
        if settle:
            time.sleep(settle)
        after = snapshot()
        left = sorted(after - before)
        counts = self.by_class.setdefault(what, [0, 0, 0])
        self.tried += 1
        counts[0] += 1
        if 400 <= response.status_code < 500:
            self.refused += 1
            counts[1] += 1
        self.created += len(left)
        counts[2] += len(left)
        assert response.status_code == status, (what, response.status_code, response.text[:500])
        assert re.search(message, answer_message(response)), (what, answer_message(response))
        assert left == [], f"{what}: the refused request left {left}"
        return response

    def count(self, what: str, *, refused: bool, created: int) -> None:
        """Count an attack whose answer the test checked itself (several concurrent requests)."""
        counts = self.by_class.setdefault(what, [0, 0, 0])
        self.tried += 1
        self.refused += refused
        self.created += max(0, created)
        counts[0] += 1
        counts[1] += refused
        counts[2] += max(0, created)

    def summary(self) -> str:
        lines = [f"security suite: tried {self.tried}, refused {self.refused}, created {self.created}"]
        for what, (tried, refused, created) in sorted(self.by_class.items()):
            lines.append(f"  {what}: tried {tried}, refused {refused}, created {created}")
        return "\n".join(lines)


TALLY = Tally()


def answer_message(response: requests.Response) -> str:
    """The message of a hub or jobs-service error answer (JSON ``message``), else the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


def objects(kube: kubernetes.client.ApiClient, namespace: str) -> set[str]:
    """``Kind/name`` of every object of :data:`KINDS` in ``namespace`` (terminating ones included)."""
    core, batch = kubernetes.client.CoreV1Api(kube), kubernetes.client.BatchV1Api(kube)
    listings = {
        "ConfigMap": core.list_namespaced_config_map, "Secret": core.list_namespaced_secret,
        "Service": core.list_namespaced_service, "Job": batch.list_namespaced_job, "Pod": core.list_namespaced_pod,
        "PersistentVolumeClaim": core.list_namespaced_persistent_volume_claim,
    }
    out = set()
    for kind in KINDS:
        for obj in listings[kind](namespace).items:
            if kind == "Secret" and obj.type == "kubernetes.io/service-account-token":
                continue  # the token controller's, not anyone's request
            if kind == "ConfigMap" and obj.metadata.name == "kube-root-ca.crt":
                continue
            out.add(f"{kind}/{obj.metadata.name}")
    return out
