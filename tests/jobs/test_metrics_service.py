"""The service's metrics side: ingest over HTTP from the real sender, token checks, follow, persistence.

The HTTP tests run the real :class:`IngestHandler` in a real tornado server on 127.0.0.1 and send
with the real :mod:`kubelab.jobs.metrics` recorder. The persistence test writes real ConfigMaps
on the devcluster and checks that the garbage collector removes them with the job's parent.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from kubelab.core.naming import ANNOTATION_METRICS_TOKEN_SHA, ANNOTATION_USER, LABEL_JOB, metrics_configmap_name
from kubelab.jobs.metrics import HttpSink, Recorder
from kubelab.jobs.metrics_service import (
    IngestHandler,
    MetricsConfigMaps,
    MetricsHub,
    ingest_url,
    make_metrics_configmap,
    new_token,
)
from kubelab.jobs.metricstore import MetricLimits, load


def parent(jid: str, name: str, user: str, sha: str, uid: str = "u-1") -> dict[str, Any]:
    return {"metadata": {"name": jid, "uid": uid, "labels": {LABEL_JOB: name},
                         "annotations": {ANNOTATION_USER: user, ANNOTATION_METRICS_TOKEN_SHA: sha}}}


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, MetricsHub, str, dict[str, Any]]]:
    token, sha = new_token()
    parents = {"ddp-abc123": parent("ddp-abc123", "ddp", "alice", sha)}
    hub = MetricsHub(parents, limits=MetricLimits(body_bytes=64 * 1024), follow_interval=0.05)
    app = tornado.web.Application([(r"/hub/api/kubelab/jobs/([a-z0-9-]+)/metrics/ingest", IngestHandler,
                                    {"service": SimpleNamespace(metrics=hub)})])
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    api = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/hub/api"
    yield api, hub, token, parents
    server.stop()


async def post(url: str, body: bytes, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = await AsyncHTTPClient().fetch(url, method="POST", body=body, headers=headers, raise_error=True)
    except HTTPClientError as e:
        return e.code
    return response.code


async def test_the_real_sender_reaches_the_store(served: tuple[str, MetricsHub, str, dict]) -> None:
    api, hub, token, _ = served
    rec = Recorder(HttpSink(ingest_url(api, "ddp"), token), rank=1, start=False)
    for step in range(30):
        rec.log(step, {"loss": 1.0 / (step + 1)})
    # The sender blocks in urllib: run it off the loop, as its thread does in a pod.
    assert await asyncio.to_thread(rec.flush_once) is True
    series = (await hub.snapshot("ddp-abc123", "alice"))["series"]
    assert series[0]["rank"] == 1 and series[0]["steps"] == list(range(30))
    assert hub.latest("ddp-abc123") == {"loss": {1: pytest.approx(1 / 30)}}


@pytest.mark.parametrize(
    ("path_name", "token", "body", "status"),
    [
        ("ddp", "wrong", b'{"rank": 0, "points": []}', 401),
        ("ddp", None, b'{"rank": 0, "points": []}', 401),
        ("other", "RIGHT", b'{"rank": 0, "points": []}', 401),
        ("ddp", "RIGHT", b'{"rank": 0, "points": [["loss", 1, "x"]]}', 400),
        ("ddp", "RIGHT", b"not json", 400),
        ("ddp", "RIGHT", b"x" * (64 * 1024 + 1), 413),
        ("ddp", "RIGHT", b'{"rank": 0, "points": [["loss", 1, 0.5]]}', 204),
    ],
    ids=["wrong-token", "no-token", "token-of-another-job", "bad-value", "bad-json", "too-large", "good"],
)
async def test_ingest_answers(served: tuple[str, MetricsHub, str, dict], path_name: str, token: str | None,
                              body: bytes, status: int) -> None:
    api, hub, right, _ = served
    token = right if token == "RIGHT" else token
    assert await post(ingest_url(api, path_name), body, token) == status
    assert (hub.store.job("ddp-abc123") is not None) == (status == 204)


async def test_a_user_token_is_not_an_ingest_token(served: tuple[str, MetricsHub, str, dict]) -> None:
    api, hub, _, _ = served
    r = await AsyncHTTPClient().fetch(ingest_url(api, "ddp"), method="POST", body=b'{"rank":0,"points":[]}',
                                      headers={"Authorization": "token some-hub-token"}, raise_error=False)
    assert r.code == 401 and hub.stats["unauthorized"] == 1


async def test_follow_streams_new_points_and_ends_with_the_job(served: tuple[str, MetricsHub, str, dict]) -> None:
    api, hub, token, _ = served
    done = False
    seen: list[dict[str, Any]] = []

    async def follower() -> None:
        async for item in hub.follow("ddp-abc123", "alice", 0, lambda: done, heartbeat=5):
            seen.append(item)

    task = asyncio.create_task(follower())
    await asyncio.sleep(0.05)
    assert hub.followers() == 1
    for step in range(3):
        body = json.dumps({"rank": 0, "points": [["loss", step, 1.0]]}).encode()
        assert await post(ingest_url(api, "ddp"), body, token) == 204
        await asyncio.sleep(0.1)
    done = True
    hub.wake("ddp-abc123")
    await asyncio.wait_for(task, 5)
    points = [p for item in seen for p in item.get("points", [])]
    assert [p[2] for p in points] == [0, 1, 2] and seen[-1] == {"done": True, "seq": 3}
    assert hub.followers() == 0


@pytest.mark.integration
async def test_series_are_kept_in_a_configmap_owned_by_the_parent(kube: Any, namespace: str) -> None:
    from kubernetes_asyncio import client as aclient

    api_client = aclient.ApiClient(configuration=await _async_config(kube))
    core = aclient.CoreV1Api(api_client)
    jid = f"m-{secrets.token_hex(3)}"
    owner = await core.create_namespaced_config_map(namespace, {"metadata": {"name": jid}, "data": {}})
    token, sha = new_token()
    parents = {jid: parent(jid, "m", "alice", sha, uid=owner.metadata.uid)}
    storage = MetricsConfigMaps(api_client, namespace)
    hub = MetricsHub(parents, storage, persist_seconds=0.1)
    await hub.ingest(jid, "alice", json.dumps({"rank": 0, "points": [["loss", s, 0.5] for s in range(5)]}).encode())
    await hub.flush()
    stored = await storage.read(jid)
    assert load(stored, "alice").to_json() == hub.store.job(jid).to_json()

    # A second hub process (a restart) finds the series and appends to them, not over them.
    again = MetricsHub(parents, storage)
    await again.ingest(jid, "alice", json.dumps({"rank": 0, "points": [["loss", 5, 0.4]]}).encode())
    assert (await again.snapshot(jid, "alice"))["series"][0]["steps"] == [0, 1, 2, 3, 4, 5]
    await again.flush()

    await core.delete_namespaced_config_map(jid, namespace, propagation_policy="Background")
    deadline = time.monotonic() + 60
    while await storage.read(jid) is not None:
        assert time.monotonic() < deadline, f"{metrics_configmap_name(jid)} outlived its parent"
        await asyncio.sleep(0.5)
    await api_client.close()


async def _async_config(kube: Any) -> Any:
    """An async client configuration equal to the sync fixture's (same server, same certificates)."""
    from kubernetes_asyncio import client as aclient

    sync = kube.configuration
    config = aclient.Configuration()
    config.host = sync.host
    config.ssl_ca_cert = sync.ssl_ca_cert
    config.cert_file = sync.cert_file
    config.key_file = sync.key_file
    config.verify_ssl = sync.verify_ssl
    if sync.api_key:
        config.api_key = dict(sync.api_key)
        config.api_key_prefix = dict(sync.api_key_prefix)
    return config


def test_the_metrics_configmap_is_owned_and_not_watched() -> None:
    body = make_metrics_configmap("jobs", "ddp-abc123", "alice", ("ddp-abc123", "uid-1"), "{}")
    assert body["metadata"]["name"] == "ddp-abc123-metrics"
    assert body["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "ConfigMap", "name": "ddp-abc123",
                                                    "uid": "uid-1"}]
    assert LABEL_JOB not in body["metadata"]["labels"]  # the jobs cache's selector needs it: not watched
