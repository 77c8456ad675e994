"""Pure manifest builders, one module per engine, and the parent object that owns them all.

Every job is one parent ConfigMap (``<id>``, holding the spec and, once the job ended, its final
status) plus the engine's objects, each with an ownerReference to the parent: deleting the
parent removes everything (cascade), which is how a job is cancelled.

Usage::

    ctx = BuildContext(user="alice", namespace="jobs", image="...")
    parent = make_parent(spec, ctx, engine="plain")
    # create parent, read its uid, then:
    children = make_children(spec, ctx, engine="plain", owner=(parent_name, uid))
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable
from typing import Any

from kubelab.core.naming import (
    ANNOTATION_ENGINE,
    ANNOTATION_FILES,
    ANNOTATION_GROUPS,
    ANNOTATION_METRICS_TOKEN_SHA,
    ANNOTATION_OUTPUTS,
    ANNOTATION_USER,
    COMPONENT_FILES,
    COMPONENT_PARENT,
)
from kubelab.jobs.builders import jobset, kubeflow, plain, trainer
from kubelab.jobs.builders.collector import make_collector_objects, outputs_annotation
from kubelab.jobs.builders.common import (
    FILES_CONFIGMAP,
    BuildContext,
    check_files,
    file_key,
    files_description,
    files_mode,
    job_id,
    labels,
    make_env_secret,
    make_metrics_secret,
    spec_json,
)
from kubelab.jobs.spec import FRAMEWORKS, JobSpec, JobSpecError

Builder = Callable[[JobSpec, BuildContext, "str | None"], list[dict[str, Any]]]

ENGINES: dict[str, Builder] = {
    plain.ENGINE: plain.make_objects,
    kubeflow.ENGINE: kubeflow.make_objects,
    trainer.ENGINE: trainer.make_objects,
    jobset.ENGINE: jobset.make_objects,
}

#: The frameworks each engine can run (the others are refused before anything is built).
ENGINE_FRAMEWORKS: dict[str, frozenset[str]] = {
    plain.ENGINE: frozenset(FRAMEWORKS),
    jobset.ENGINE: frozenset(FRAMEWORKS),
    kubeflow.ENGINE: frozenset(kubeflow.KINDS),
    trainer.ENGINE: frozenset(trainer.RUNTIMES),
}

__all__ = ["ENGINES", "BuildContext", "check", "check_files", "files_description", "files_mode", "job_id",
           "make_children", "make_files_configmap", "make_parent", "owner_reference"]


def check(spec: JobSpec, ctx: BuildContext, engine: str) -> None:
    """Refuse what no builder could build, from the spec and its context alone (no objects are made).

    Raises:
        kubelab.jobs.spec.JobSpecError: The engine cannot run this framework, or the files are
            not allowed (names the field).
    """
    if spec.framework not in ENGINE_FRAMEWORKS[engine]:
        allowed = ", ".join(sorted(ENGINE_FRAMEWORKS[engine]))
        raise JobSpecError("framework", f"{spec.framework!r} cannot run on the engine {engine}; allowed: {allowed}")
    check_files(spec, ctx)


def make_parent(spec: JobSpec, ctx: BuildContext, engine: str) -> dict[str, Any]:
    """The parent ConfigMap: the job's record (spec, engine, user) that owns every other object.

    With a metrics token it carries the token's sha256 (the token itself is only in the Secret)."""
    parent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": job_id(ctx.user, spec.name),
            "namespace": ctx.namespace,
            "labels": labels(ctx.user, spec.name, component=COMPONENT_PARENT),
            "annotations": {
                ANNOTATION_USER: ctx.user,
                ANNOTATION_GROUPS: ",".join(ctx.groups),
                ANNOTATION_ENGINE: engine,
                ANNOTATION_FILES: files_description(ctx),
                ANNOTATION_OUTPUTS: outputs_annotation(spec, ctx),
            },
        },
        "data": {"spec.json": spec_json(spec), "queue": ctx.queue or ""},
    }
    if ctx.metrics_token:
        sha = hashlib.sha256(ctx.metrics_token.encode()).hexdigest()
        parent["metadata"]["annotations"][ANNOTATION_METRICS_TOKEN_SHA] = sha
    return parent


def make_files_configmap(spec: JobSpec, ctx: BuildContext) -> dict[str, Any] | None:
    """The ConfigMap shipping the script's folder, when job pods can see neither home nor shared volume."""
    if files_mode(ctx.home, ctx.shared) != FILES_CONFIGMAP or not ctx.files:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{job_id(ctx.user, spec.name)}-files",
            "namespace": ctx.namespace,
            "labels": labels(ctx.user, spec.name, component=COMPONENT_FILES),
        },
        "binaryData": {
            file_key(i): base64.b64encode(ctx.files[path]).decode() for i, path in enumerate(sorted(ctx.files))
        },
    }


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """An ownerReference to the parent ConfigMap ``name``."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid}


def make_children(spec: JobSpec, ctx: BuildContext, engine: str, owner: tuple[str, str]) -> list[dict[str, Any]]:
    """Every object of the job except the parent, each owned by ``owner`` (name, uid), in creation order.

    Raises:
        KeyError: Unknown engine.
        kubelab.jobs.spec.JobSpecError: The engine cannot run this spec (names the field).
    """
    files = make_files_configmap(spec, ctx)
    env = make_env_secret(spec, ctx)  # before the pods that read it
    metrics = make_metrics_secret(spec, ctx)
    # The collector (RWO homes) before the ranks: they fetch inputs from it when they start.
    collector = make_collector_objects(spec, ctx)
    objects = ([o for o in (files, env, metrics) if o] + collector
               + ENGINES[engine](spec, ctx, files["metadata"]["name"] if files else None))
    out = []
    for obj in objects:
        obj = copy.deepcopy(obj)
        obj["metadata"]["ownerReferences"] = [owner_reference(*owner)]
        out.append(obj)
    return out
