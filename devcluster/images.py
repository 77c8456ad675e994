"""Image pulls on the process node: a registry under ``.invalid`` can never be reached (pure).

The process node runs commands from the host, so every image is "present" and never pulled.
To let tests and demos see what a kubelet reports when a node cannot pull an image, an image
whose registry host lies under the reserved top-level domain ``.invalid`` (RFC 2606: it never
resolves), such as ``registry.invalid/team/trainer:1``, fails the way a kubelet's pull fails
when the registry's name does not resolve. Every other image works as before.

What the kubelet does (kubernetes v1.20 ``pkg/kubelet/images/image_manager.go``,
``EnsureImageExists``; ``pkg/kubelet/kuberuntime/kuberuntime_container.go``, ``startContainer``;
``pkg/kubelet/images/types.go``; ``pkg/kubelet/events/event.go``):

* pull: Normal event ``Pulling`` (``Pulling image "<image>"``), then on failure a Warning event
  ``Failed`` (``Failed to pull image "<image>": <runtime error>``) and a Warning ``Failed``
  (``Error: ErrImagePull``); the container waits with reason ``ErrImagePull`` and the runtime's
  error as its message (dockershim's shape for a registry that does not resolve:
  ``rpc error: code = Unknown desc = Error response from daemon: Get https://<host>/v2/: dial
  tcp: lookup <host>: no such host``);
* within the pull's back-off (``backOffPeriod`` 10 s doubling to ``MaxContainerBackOff`` 300 s,
  ``pkg/kubelet/kubelet.go``): a Normal event ``BackOff`` (``Back-off pulling image "<image>"``)
  and a Warning ``Failed`` (``Error: ImagePullBackOff``); the container waits with reason
  ``ImagePullBackOff`` and that message;
* ``imagePullPolicy: Never`` and an image not present: a Warning event ``ErrImageNeverPull``
  (``Container image "<image>" is not present with pull policy of Never``) and the reason
  ``ErrImageNeverPull``.

The process node shortens the back-off (:func:`pull_backoff`) as it does ``CrashLoopBackOff``.
"""

from __future__ import annotations

import dataclasses

#: The reserved top-level domain whose registries the process node can never reach.
UNREACHABLE_TLD = "invalid"
#: Node annotation: the registries this process node cannot reach (``*.invalid``).
REGISTRY_ANNOTATION = "kubelab.io/unreachable-registries"
ERR_IMAGE_PULL = "ErrImagePull"
IMAGE_PULL_BACKOFF = "ImagePullBackOff"
ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
#: Seconds between a failed pull and the pod's next sync, which finds the pull backing off.
SYNC_SECONDS = 1.0
#: The first pull back-off and its cap, in seconds (the kubelet's are 10 and 300).
BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class PullFailure:
    """Why an image cannot be pulled.

    Attributes:
        reason: The container's waiting reason (``ErrImagePull``, ``ErrImageNeverPull``).
        message: Its waiting message (the runtime's error, or the kubelet's words).
    """

    reason: str
    message: str


def registry_host(image: str) -> str | None:
    """The registry host of an image reference (with its port), or None for Docker Hub's short names.

    As the reference grammar reads it (``docker/distribution`` ``reference.ParseNormalizedNamed``):
    the first ``/``-separated component names a registry when it holds a ``.`` or a ``:`` or is
    ``localhost``.
    """
    first, sep, _rest = image.partition("/")
    if not sep:
        return None
    if "." in first or ":" in first or first == "localhost":
        return first
    return None


def _hostname(host: str) -> str:
    """``host`` without its ``:port`` (an IPv6 literal ``[...]`` keeps its colons)."""
    if host.endswith("]") or ":" not in host:
        return host
    return host.rsplit(":", 1)[0]


def unreachable(image: str) -> bool:
    """Whether the image's registry is under :data:`UNREACHABLE_TLD` (``registry.invalid/...``)."""
    host = registry_host(image)
    if host is None:
        return False
    name = _hostname(host).lower().rstrip(".")
    return name == UNREACHABLE_TLD or name.endswith("." + UNREACHABLE_TLD)


def pull_failure(image: str, pull_policy: str | None) -> PullFailure | None:
    """Why the process node cannot pull ``image``, or None when it runs.

    Args:
        image: The container's ``image``.
        pull_policy: Its ``imagePullPolicy`` (the API server defaults it).
    """
    if not unreachable(image):
        return None
    if pull_policy == "Never":
        return PullFailure(ERR_IMAGE_NEVER_PULL,
                           f'Container image "{image}" is not present with pull policy of Never')
    host = registry_host(image) or ""
    name = _hostname(host)
    return PullFailure(ERR_IMAGE_PULL, "rpc error: code = Unknown desc = Error response from daemon: "
                       f"Get https://{host}/v2/: dial tcp: lookup {name}: no such host")


def pulling_message(image: str) -> str:
    """The ``Pulling`` event's message."""
    return f'Pulling image "{image}"'


def failed_message(image: str, failure: PullFailure) -> str:
    """The ``Failed`` event's message after a pull failed."""
    return f'Failed to pull image "{image}": {failure.message}'


def backoff_message(image: str) -> str:
    """The ``BackOff`` event's message and the ``ImagePullBackOff`` waiting message."""
    return f'Back-off pulling image "{image}"'


def pull_backoff(failures: int) -> float:
    """Seconds to back off after ``failures`` failed pulls (1, 2, ...): doubling, capped."""
    return min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** max(0, min(failures - 1, 8)))
