"""Which PVC is a user's home: the injective name, or the one kubelab 0.1 made (upgrade).

kubelab 0.1 named homes with a rule that was not injective (``john.doe`` and the user called
``john-doe-30f69670`` both got ``home-john-doe-30f69670``). Today's name comes from
:func:`kubelab.core.naming.home_claim_name`. A user whose name changed keeps the home made
before the upgrade, but only when that claim records this exact user as its owner
(:func:`kubelab.core.naming.owner_of`: kubelab's annotation, else the one KubeSpawner writes on
every PVC it creates); otherwise a user named like another user's old claim would adopt it.

The decision is pure (:func:`choose_home_claim`); :func:`find_home_claim` reads the one or two
candidate claims and applies it. The spawner and the jobs service both call it, so a job mounts
the same home the notebook does. ``docs/security.md`` gives the whole rule.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio.client.exceptions import ApiException

from kubelab.core.informer import api_message
from kubelab.core.naming import home_claim_name, legacy_home_claim_name, owner_of

#: Seconds each claim read may take before the spawn or submit is answered 503.
READ_TIMEOUT = 10


class HomeClaimError(RuntimeError):
    """The home cannot be used; ``status`` is the HTTP answer and ``message`` says why in plain words.

    Attributes:
        status: 409 when the claim under this user's name belongs to someone else, 503 when the
            API server cannot be read.
        message: For the user.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class HomeChoice:
    """The claim to mount.

    Attributes:
        claim: PVC name.
        legacy: True when it is a home kept from kubelab 0.1's naming.
        exists: Whether the claim exists already (False: the spawner creates it at the first start).
    """

    claim: str
    legacy: bool = False
    exists: bool = False


def choose_home_claim(username: str, found: Mapping[str, Mapping[str, str] | None]) -> HomeChoice:
    """Decide which claim is ``username``'s home (pure).

    1. The claim under today's name, when it exists and records this user as owner, or records no
       owner (a claim an administrator made by hand under the derived name).
    2. Else the claim under kubelab 0.1's name, when it exists and records exactly this user.
    3. Else today's name, which the spawner then creates, unless a claim of that name exists and
       belongs to another user: that happens only when this user's name equals another user's
       old claim name, and mounting it would hand over that user's files.

    Args:
        username: The exact JupyterHub user name.
        found: Candidate claim name → its annotations (``{}`` for none), or None when the claim
            does not exist. Names absent from the mapping count as not existing.

    Raises:
        HomeClaimError: 409, today's claim belongs to another user.
    """
    current = home_claim_name(username)
    legacy = legacy_home_claim_name(username)
    current_annotations = found.get(current)
    if current_annotations is not None and owner_of(current_annotations) in (None, username):
        return HomeChoice(current, exists=True)
    if legacy is not None and found.get(legacy) is not None and owner_of(found[legacy]) == username:
        return HomeChoice(legacy, legacy=True, exists=True)
    if current_annotations is not None:
        raise HomeClaimError(
            409,
            f"the volume {current} that would be your home belongs to another user; "
            "ask an administrator to move it (nothing was created)",
        )
    return HomeChoice(current)


def home_candidates(username: str) -> list[str]:
    """The claim names :func:`choose_home_claim` looks at, today's first."""
    legacy = legacy_home_claim_name(username)
    return [home_claim_name(username)] + ([legacy] if legacy else [])


async def _annotations(core: Any, namespace: str, name: str) -> Mapping[str, str] | None:
    try:
        claim = await asyncio.wait_for(core.read_namespaced_persistent_volume_claim(name, namespace), READ_TIMEOUT)
    except ApiException as e:
        if e.status == 404:
            return None
        # The API server's sentence names the verb and the resource the hub may lack (RBAC).
        said = api_message(e)
        raise HomeClaimError(503, f"cannot read the volume {namespace}/{name}: {e.status} {e.reason}"
                                  + (f": {said}" if said != str(e.reason) else "")) from e
    except (TimeoutError, aiohttp.ClientError) as e:
        raise HomeClaimError(503, f"cannot reach the cluster to find your home volume {namespace}/{name}: "
                                  f"{e or type(e).__name__}") from e
    metadata = claim.metadata if not isinstance(claim, Mapping) else claim.get("metadata") or {}
    annotations = metadata.annotations if not isinstance(metadata, Mapping) else metadata.get("annotations")
    return dict(annotations or {})


async def find_home_claim(core: Any, namespace: str, username: str,
                          cached: Callable[[str], Mapping[str, str] | None] | None = None) -> HomeChoice:
    """Read the candidate claims of ``username`` in ``namespace`` and choose one (:func:`choose_home_claim`).

    Args:
        core: A ``kubernetes_asyncio`` ``CoreV1Api`` (KubeSpawner's ``self.api`` is one).
        namespace: Where homes live.
        username: The exact JupyterHub user name.
        cached: Claim name → its annotations from a watch-backed cache, None when the cache does
            not hold it. A claim the cache holds exists and is not read again; one it lacks is
            read from the API, since a claim made a moment ago may not have reached the cache.

    Raises:
        HomeClaimError: 409 (another user's claim) or 503 (the API server cannot be read).
    """
    names = home_candidates(username)

    async def read(name: str) -> Mapping[str, str] | None:
        hit = cached(name) if cached is not None else None
        return hit if hit is not None else await _annotations(core, namespace, name)

    values = await asyncio.gather(*(read(n) for n in names))
    return choose_home_claim(username, dict(zip(names, values, strict=True)))
