"""Pod status as the kubelet would report it, built from the process node's container states (pure)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from kubelab.devcluster.eviction import REASON as EVICTED


def rfc3339(ts: datetime.datetime) -> str:
    """Second-precision UTC time, as the API stores it."""
    return ts.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class ContainerState:
    """What the process node knows about one container.

    Attributes:
        name: Container name.
        image: The image, recorded and otherwise ignored.
        state: ``waiting``, ``running`` or ``terminated``.
        reason: Waiting/terminated reason (``ContainerCreating``, ``Completed``, ``Error``, ...).
        message: Human-readable detail.
        exit_code: Exit status once terminated.
        signal: The signal that killed it, if any.
        started_at: When the current (or last) process started.
        finished_at: When it ended.
        restart_count: How often the container was restarted.
        last_terminated: ``lastState.terminated`` of the previous instance, if any.
    """

    name: str
    image: str
    state: str = "waiting"
    reason: str = "ContainerCreating"
    message: str = ""
    exit_code: int | None = None
    signal: int | None = None
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    restart_count: int = 0
    last_terminated: dict[str, Any] | None = None

    def terminated_dict(self, container_id: str) -> dict[str, Any]:
        """The ``terminated`` state block for this instance."""
        out: dict[str, Any] = {
            "exitCode": self.exit_code if self.exit_code is not None else 0,
            "reason": self.reason,
            "startedAt": rfc3339(self.started_at) if self.started_at else None,
            "finishedAt": rfc3339(self.finished_at) if self.finished_at else None,
            "containerID": container_id,
        }
        if self.message:
            out["message"] = self.message
        if self.signal:
            out["signal"] = self.signal
        return out


#: The terminated reason of a container whose cgroup saw an OOM kill.
OOM_KILLED = "OOMKilled"


def exit_reason(code: int, oom_killed: bool = False) -> str:
    """The kubelet's terminated reason for an exit status.

    Args:
        code: The exit status.
        oom_killed: The kernel's OOM killer killed a process of the container's memory cgroup.
            As dockershim reports it (v1.20 ``pkg/kubelet/dockershim/docker_container.go``), that
            wins over the exit status: a program may survive the kill of one of its children.
    """
    if oom_killed:
        return OOM_KILLED
    return "Completed" if code == 0 else "Error"


def pod_phase(restart_policy: str, states: Sequence[ContainerState], started: bool) -> str:
    """The pod phase from its containers, honouring the restart policy.

    Args:
        restart_policy: ``Always``, ``OnFailure`` or ``Never``.
        states: The containers' states.
        started: Whether any container process was ever started.
    """
    if any(s.state == "running" for s in states):
        return "Running"
    if states and all(s.state == "terminated" for s in states):
        ok = all(s.exit_code == 0 for s in states)
        if restart_policy == "Never" or (restart_policy == "OnFailure" and ok):
            return "Succeeded" if ok else "Failed"
        return "Running"
    return "Running" if started else "Pending"


def container_id(pod_uid: str, state: ContainerState) -> str:
    """A stable, fake runtime id for a container instance."""
    return f"kubelab://{pod_uid[:8]}-{state.name}-{state.restart_count}"


def container_status(pod_uid: str, state: ContainerState) -> dict[str, Any]:
    """One ``containerStatuses`` entry.

    Every state key is present and unused ones are null: a strategic-merge patch
    would otherwise keep ``waiting`` beside ``running``.
    """
    cid = container_id(pod_uid, state)
    current: dict[str, Any] = {"waiting": None, "running": None, "terminated": None}
    if state.state == "running":
        current["running"] = {"startedAt": rfc3339(state.started_at) if state.started_at else None}
    elif state.state == "terminated":
        current["terminated"] = state.terminated_dict(cid)
    else:
        current["waiting"] = {"reason": state.reason, **({"message": state.message} if state.message else {})}
    return {
        "name": state.name,
        "image": state.image,
        "imageID": "",
        "containerID": cid if state.state != "waiting" or state.restart_count else None,
        "ready": state.state == "running",
        "started": state.state == "running",
        "restartCount": state.restart_count,
        "state": current,
        "lastState": {"waiting": None, "running": None, "terminated": state.last_terminated},
    }


def pod_status(
    pod: Mapping[str, Any],
    states: Sequence[ContainerState],
    pod_ip: str | None,
    host_ip: str,
    start_time: datetime.datetime,
    started: bool,
    now: datetime.datetime,
    message: str = "",
    evicted: str | None = None,
) -> dict[str, Any]:
    """The full pod ``status`` to patch.

    Args:
        pod: The pod.
        states: Its containers' states (all containers, in spec order).
        pod_ip: Its address (None before one is assigned).
        host_ip: The node's InternalIP.
        start_time: When the node accepted the pod.
        started: Whether a container process was ever started.
        now: Transition time for conditions.
        message: Pod-level message (e.g. why a container cannot start).
        evicted: The eviction message once the node evicted the pod: the pod is then ``Failed``
            with reason ``Evicted``, whatever its restart policy.
    """
    spec = pod.get("spec") or {}
    phase = "Failed" if evicted else pod_phase(spec.get("restartPolicy") or "Always", states, started)
    ready = phase == "Running" and all(s.state == "running" for s in states)
    terminal = phase in ("Succeeded", "Failed")
    stamp = rfc3339(now)

    def condition(kind: str, value: bool, reason: str | None = None) -> dict[str, Any]:
        return {"type": kind, "status": "True" if value else "False", "lastProbeTime": None,
                "lastTransitionTime": stamp, "reason": reason}

    not_ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
    return {
        "phase": phase,
        "message": evicted or message or None,
        "reason": EVICTED if evicted else None,
        "hostIP": host_ip,
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}] if pod_ip else None,
        "startTime": rfc3339(start_time),
        "qosClass": (pod.get("status") or {}).get("qosClass"),
        "conditions": [
            condition("Initialized", True, "PodCompleted" if terminal else None),
            condition("Ready", ready, None if ready else not_ready_reason),
            condition("ContainersReady", ready, None if ready else not_ready_reason),
            condition("PodScheduled", True),
        ],
        "initContainerStatuses": [
            {
                "name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True,
                "restartCount": 0,
                "state": {"waiting": None, "running": None,
                          "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": stamp,
                                         "finishedAt": stamp}},
            }
            for c in spec.get("initContainers") or []
        ] or None,
        "containerStatuses": [container_status(pod["metadata"]["uid"], s) for s in states],
    }
