"""The service's parts that need no cluster: hub configuration, submit validation, API retries."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException
from traitlets.config import Config

from kubelab.core.naming import JOBS_ADMIN_SCOPE as ADMIN_SCOPE
from kubelab.core.naming import JOBS_SCOPE
from kubelab.core.platform import Platform
from kubelab.jobs.engines import select
from kubelab.jobs.handlers import _NAME
from kubelab.jobs.kube import with_retries
from kubelab.jobs.pages import TEMPLATES_DIR
from kubelab.jobs.roles import configure_jobs
from kubelab.jobs.service import JobsService
from kubelab.jobs.spec import JobSpecError
from tests.jobs.helpers import catalogue


def test_configure_hub_merges_scopes_roles_and_handlers() -> None:
    c = Config()
    c.JupyterHub.extra_handlers = [("/api/other", object)]
    c.JupyterHub.custom_scopes = {"custom:other": {"description": "x"}}
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", "custom:other"]}]
    c.Authenticator.admin_users = {"root"}
    c.KubeSpawner.namespace = "hub-ns"
    platform = Platform(catalogue(jobs={"engine": "plain"}))
    service = configure_jobs(c, platform, admin_groups=["admins"])
    assert service.namespace == "hub-ns"
    assert [h[0] for h in c.JupyterHub.extra_handlers] == [
        "/api/other", "/api/kubelab/options", "/api/kubelab/jobs", f"/api/kubelab/jobs/({_NAME})",
        f"/api/kubelab/jobs/({_NAME})/logs", f"/api/kubelab/jobs/({_NAME})/cancel",
        f"/api/kubelab/jobs/({_NAME})/metrics", f"/api/kubelab/jobs/({_NAME})/metrics/ingest",
        "/kubelab/jobs/?", "/kubelab/jobs/([^/]+)/([a-z0-9-]+)/?", "/kubelab/jobs/([^/]+)/([a-z0-9-]+)/logs",
        "/kubelab/jobs/([^/]+)/([a-z0-9-]+)/cancel", "/api/kubelab/sweeps", f"/api/kubelab/sweeps/({_NAME})",
        f"/api/kubelab/sweeps/({_NAME})/cancel", "/kubelab/sweeps/?", "/kubelab/sweeps/([^/]+)/([a-z0-9-]+)/?",
        "/kubelab/sweeps/([^/]+)/([a-z0-9-]+)/cancel"]
    assert str(TEMPLATES_DIR) in c.JupyterHub.template_paths  # the jobs pages' templates
    assert set(c.JupyterHub.custom_scopes) == {"custom:other", JOBS_SCOPE, ADMIN_SCOPE}
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["user"]["scopes"] == ["self", "custom:other", JOBS_SCOPE]
    assert roles["server"]["scopes"] == ["users:activity!user", "access:servers!server", JOBS_SCOPE]
    assert roles["kubelab-jobs-admin"]["users"] == ["root"] and roles["kubelab-jobs-admin"]["groups"] == ["admins"]
    assert roles["kubelab-jobs-admin"]["scopes"] == [JOBS_SCOPE, ADMIN_SCOPE]
    # Both start with the platform, not on a first request; the sweeps after the jobs they drive.
    assert [c.name for c in platform._components] == ["jobs", "sweeps"] and platform._components[0] is service


def test_configure_hub_namespace_from_the_catalogue_wins() -> None:
    c = Config()
    c.KubeSpawner.namespace = "hub-ns"
    assert configure_jobs(c, Platform(catalogue(jobs={"namespace": "jobs-ns"}))).namespace == "jobs-ns"


def service(**catalogue_overrides: Any) -> JobsService:
    svc = JobsService(Platform(catalogue(**catalogue_overrides)), "jobs")
    svc.engines = select(set(), "plain")
    return svc


def test_prepare_builds_the_context_from_the_catalogue() -> None:
    spec, ctx, engine, _ = service().prepare("alice", ["gpu-users"], {
        "name": "ddp", "script": "t.py", "workers": 2, "gpus_per_worker": 1, "gpu_class": "a100"})
    assert engine == "plain" and spec.total_gpus == 2
    assert ctx.image == "ghcr.io/kubelab/notebook-cpu:0.1.0" and ctx.gpu_class.key == "a100"
    assert ctx.groups == ("gpu-users",) and ctx.max_runtime_seconds == 3600


RWO = {"storage": {"home": {"accessMode": "ReadWriteOnce"}}}
PREPARE_ERRORS = [
    pytest.param(["not", "an", "object"], {}, "(body)", "must be a JSON object", id="not-an-object"),
    pytest.param({"name": "x", "script": "t.py", "colour": "red"}, {}, "colour", "unknown field", id="unknown"),
    pytest.param({"name": "x", "script": "t.py", "image": "evil"}, {}, "image", "not allowed", id="image"),
    pytest.param({"name": "x", "script": "t.py", "files": {"t.py": "%%%"}}, RWO, "files", "not valid base64",
                 id="files-not-base64"),
    pytest.param({"name": "x", "script": "t.py"}, RWO, "files", "send the script's folder", id="files-missing"),
    pytest.param({"name": "x", "script": "t.py", "framework": "tensorflow"}, {"jobs": {"engine": "trainer-v2"}},
                 "framework", "'tensorflow' cannot run on the engine trainer-v2; allowed: mpi, pytorch, replicas",
                 id="engine-refuses"),
]


@pytest.mark.parametrize(("body", "overrides", "field", "match"), PREPARE_ERRORS)
def test_prepare_refusals_name_the_field(body: Any, overrides: dict, field: str, match: str) -> None:
    svc = service(**overrides)
    if overrides.get("jobs", {}).get("engine") == "trainer-v2":
        svc.engines = select({"trainer.kubeflow.org"}, "trainer-v2")
    with pytest.raises(JobSpecError, match=match) as err:
        svc.prepare("alice", [], body)
    assert err.value.field == field


def test_prepare_accepts_shipped_files_with_rwo_homes() -> None:
    _, ctx, _, _ = service(**RWO).prepare("alice", [], {
        "name": "x", "script": "t.py", "files": {"t.py": base64.b64encode(b"print(1)").decode()}})
    assert ctx.files == {"t.py": b"print(1)"}


class Flaky:
    """Raises the given statuses in turn, then returns "ok" (the API server's 503/429 cannot be
    produced on demand on the devcluster, so this stands in for it)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.statuses:
            raise ApiException(status=self.statuses.pop(0), reason="fault")
        return "ok"


async def test_retries_transient_statuses_with_backoff() -> None:
    call = Flaky(503, 429, 500)
    assert await with_retries(call, "create Job ns/x", base=0.001) == "ok"
    assert call.calls == 4


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
async def test_does_not_retry_other_statuses(status: int) -> None:
    call = Flaky(status)
    with pytest.raises(ApiException) as err:
        await with_retries(call, "create Job ns/x", base=0.001)
    assert err.value.status == status and call.calls == 1


async def test_gives_up_naming_the_object() -> None:
    with pytest.raises(RuntimeError, match=r"create Job ns/x: API server answered 503 fault 3 times"):
        await with_retries(Flaky(503, 503, 503, 503), "create Job ns/x", attempts=3, base=0.001)
