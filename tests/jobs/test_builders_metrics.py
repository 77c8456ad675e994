"""Builders: the metrics and log-directory env of every rank, and the job's ingest-token Secret."""

from __future__ import annotations

import base64

import pytest

from kubelab.core.catalogue import HomeStorage, SharedStorage
from kubelab.jobs.builders.common import BuildContext, contract_env, make_metrics_secret
from kubelab.jobs.spec import JobSpec

SPEC = JobSpec(name="ddp", script="train.py", workers=2)


def env_of(ctx: BuildContext) -> dict[str, dict]:
    return {e["name"]: e for e in contract_env(SPEC, ctx, rank=0, peers=["a", "b"])}


def test_ranks_get_the_ingest_url_and_the_token_only_by_secret_ref() -> None:
    ctx = BuildContext(user="alice", namespace="jobs", image="img", metrics_url="http://hub:8081/hub/api/kubelab/"
                       "jobs/ddp/metrics/ingest", metrics_token="s3cret-token")
    env = env_of(ctx)
    assert env["KUBELAB_METRICS_URL"]["value"].endswith("/kubelab/jobs/ddp/metrics/ingest")
    token = env["KUBELAB_METRICS_TOKEN"]
    assert "value" not in token  # never a literal in the pod spec
    secret = make_metrics_secret(SPEC, ctx)
    assert token["valueFrom"]["secretKeyRef"] == {"name": secret["metadata"]["name"], "key": "token"}
    assert secret["metadata"]["name"].endswith("-metrics-token") and secret["kind"] == "Secret"
    assert base64.b64decode(secret["data"]["token"]).decode() == "s3cret-token"
    assert "s3cret-token" not in str(contract_env(SPEC, ctx, rank=0, peers=["a", "b"]))


def test_no_metrics_env_without_an_ingest_url() -> None:
    ctx = BuildContext(user="alice", namespace="jobs", image="img")
    assert not {"KUBELAB_METRICS_URL", "KUBELAB_METRICS_TOKEN"} & set(env_of(ctx))
    assert make_metrics_secret(SPEC, ctx) is None


@pytest.mark.parametrize(
    ("home", "shared", "log_dir"),
    [
        (HomeStorage(access_mode="ReadWriteMany", mount_path="/home/jovyan"), None, "/home/jovyan/kubelab-runs/ddp"),
        (HomeStorage(access_mode="ReadWriteOnce", mount_path="/home/jovyan"),
         SharedStorage(claim_name="lab", mount_path="/shared"), "/shared/kubelab-runs/"),
        (HomeStorage(access_mode="ReadWriteOnce", mount_path="/home/jovyan"), None, None),
    ],
    ids=["rwx-home", "shared-volume", "configmap"],
)
def test_the_log_directory_is_where_the_server_sees_it(home: HomeStorage, shared: SharedStorage | None,
                                                       log_dir: str | None) -> None:
    ctx = BuildContext(user="alice", namespace="jobs", image="img", home=home, shared=shared)
    value = env_of(ctx).get("KUBELAB_LOG_DIR", {}).get("value")
    if log_dir is None:
        assert value is None
    else:  # under the files root both sides see, ending in the job's name
        assert value.startswith(log_dir) and value.endswith("/ddp"), value
