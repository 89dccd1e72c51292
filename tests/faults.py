"""Fault injection for integration tests: stop/start the local OpenSearch node or Redis that the settings name,
let `ingest.submit.wait` run in a thread while a fault lands, and check that an index holds a catalog exactly once.

The services are the ones `grdr cluster start` runs for the same settings (GRDR_HOME, ports), so in CI the
tests act on the CI cluster; `services_restored` brings both back whatever happens, because later tests need them.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional
from urllib.parse import urlsplit

import pytest
import redis

from grdr_plugin.cluster import opensearch_node, redis_server
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.id_registry import RegistryReader
from grdr_plugin.index import ID_FIELD
from grdr_plugin.settings import Settings
from ingest.schemas import Summary
from ingest.submit import Submitted, wait

# kombu's Redis transport keeps each delivered, not yet acknowledged message in this hash (delivery tag ->
# [message, exchange, routing key]) until the ack; a message left there by a dead worker is redelivered.
UNACKED_KEY = "unacked"
MSEARCH_CHUNK = 1000


def _quiet(_: str) -> None:
    """Progress lines of the node start are not needed in a test."""


def require_local_services(settings: Settings) -> None:
    """Fail (not skip) unless OpenSearch, the broker and the result backend are the local services of `settings`."""
    local = {"127.0.0.1", "localhost"}
    os_url = urlsplit(settings.opensearch_url)
    if os_url.hostname not in local or os_url.port != settings.opensearch_port:
        pytest.fail(f"GRDR_OPENSEARCH_URL={settings.opensearch_url} is not the local node on GRDR_OPENSEARCH_PORT="
                    f"{settings.opensearch_port}: fault tests stop and start the node `grdr cluster start` runs")
    for name, url in (("GRDR_BROKER_URL", settings.broker_url), ("GRDR_RESULT_BACKEND", settings.result_backend)):
        parts = urlsplit(url)
        if parts.scheme != "redis" or parts.hostname not in local or (parts.port or 6379) != settings.redis_port:
            pytest.fail(f"{name}={url} is not the local Redis on GRDR_REDIS_PORT={settings.redis_port}: "
                        "fault tests restart the Redis `grdr cluster start` runs")
    if redis_server.ping(settings.redis_port) is None:
        pytest.fail(f"Redis does not answer on 127.0.0.1:{settings.redis_port}; run `grdr cluster start`")


def stop_opensearch(settings: Settings) -> None:
    if opensearch_node.stop(settings, ClusterPaths.from_settings(settings)) is None:
        pytest.fail(f"no local OpenSearch node to stop under {settings.home}")


def start_opensearch(settings: Settings) -> None:
    opensearch_node.start(settings, ClusterPaths.from_settings(settings), _quiet)


def restart_redis(settings: Settings, down_s: float) -> None:
    """SIGTERM (Redis writes its snapshot, so queued batches survive), stay down `down_s`, start on the same files."""
    paths = ClusterPaths.from_settings(settings)
    if redis_server.stop(settings, paths) is None:
        pytest.fail(f"no local Redis to restart under {settings.home}")
    time.sleep(down_s)
    redis_server.start(settings, paths)


@contextmanager
def services_restored(settings: Settings) -> Iterator[None]:
    """Whatever happens inside, Redis and OpenSearch run again afterwards (no-ops when they already do)."""
    try:
        yield
    finally:
        paths = ClusterPaths.from_settings(settings)
        redis_server.start(settings, paths)
        opensearch_node.start(settings, paths, _quiet)


class _Cancelled(Exception):
    """Raised inside wait()'s thread once the test is over, so that it stops polling batches nobody runs."""


class _CancellableResult:
    """An AsyncResult whose ready() raises once `cancelled` is set (wait() has no way to be stopped otherwise)."""

    def __init__(self, result, cancelled: threading.Event):
        self._result = result
        self._cancelled = cancelled

    def ready(self) -> bool:
        if self._cancelled.is_set():
            raise _Cancelled()
        return self._result.ready()

    def __getattr__(self, name: str):
        return getattr(self._result, name)


class BackgroundWait:
    """`ingest.submit.wait` in a thread, as `grdr ingest --wait` runs, so that a fault lands while it polls.

    Use it as a context manager: leaving it (a failed test too) stops the thread."""

    def __init__(self, sub: Submitted):
        self.total = sum(sub.sizes)
        self.done = 0
        self._cond = threading.Condition()
        self._cancelled = threading.Event()
        self._finished = False
        self._out: Optional[tuple[Summary, dict]] = None
        self._error: Optional[BaseException] = None
        watched = dataclasses.replace(sub, results=[_CancellableResult(r, self._cancelled) for r in sub.results])
        self._thread = threading.Thread(target=self._run, args=(watched,), daemon=True)

    def __enter__(self) -> "BackgroundWait":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._cancelled.set()
        self._thread.join(timeout=10)

    def _progress(self, videos: int) -> None:
        with self._cond:
            self.done += videos
            self._cond.notify_all()

    def _run(self, sub: Submitted) -> None:
        try:
            self._out = wait(sub, on_progress=self._progress)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread by result()
            self._error = exc
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def until(self, videos: int, timeout_s: float) -> int:
        """Block until at least `videos` are done (or the run ended); -> videos done."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.done >= videos or self._finished, timeout=timeout_s):
                raise TimeoutError(f"only {self.done} of {self.total} videos done after {timeout_s:.0f} s")
            return self.done

    def result(self, timeout_s: float) -> tuple[Summary, dict]:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"wait() still running after {timeout_s:.0f} s ({self.done} of {self.total} videos)")
        if self._error is not None:
            raise self._error
        assert self._out is not None
        return self._out


def held_batches(settings: Settings, queue: str) -> list[str]:
    """Task ids of the batches of `queue` that were delivered and not acknowledged (what a dead worker held)."""
    r = redis.Redis.from_url(settings.broker_url, socket_timeout=5)
    held = []
    for raw in r.hvals(UNACKED_KEY):
        message, _exchange, routing_key = json.loads(raw)
        if routing_key == queue:
            held.append(message["headers"]["id"])
    return held


def assert_indexed_once_and_searchable(client, alias: str, video_ids: set[str]) -> None:
    """The alias holds each video exactly once, every document carries semantic IDs, a `terms` query on its own
    IDs finds it, and every one of those IDs is published in the registry (so a query process can decode it)."""
    client.indices.refresh(index=alias)
    assert client.count(index=alias)["count"] == len(video_ids)
    docs: dict[str, list[str]] = {}
    body = {"size": 5000, "sort": [{"video_id": "asc"}], "_source": ["video_id", ID_FIELD],
            "query": {"match_all": {}}}
    while True:
        hits = client.search(index=alias, body=body)["hits"]["hits"]
        for h in hits:
            assert h["_id"] not in docs, f"video {h['_id']} is indexed twice"
            assert h["_source"]["video_id"] == h["_id"]
            docs[h["_id"]] = h["_source"].get(ID_FIELD) or []
        if len(hits) < body["size"]:
            break
        body["search_after"] = hits[-1]["sort"]
    assert set(docs) == video_ids
    assert all(docs.values()), [v for v, ids in docs.items() if not ids][:10]

    found: set[str] = set()
    items = sorted(docs.items())
    for start in range(0, len(items), MSEARCH_CHUNK):
        chunk = items[start:start + MSEARCH_CHUNK]
        lines: list[dict] = []
        for vid, ids in chunk:
            lines += [{}, {"size": 0, "track_total_hits": True, "query": {"bool": {"filter": [
                {"terms": {ID_FIELD: ids}}, {"ids": {"values": [vid]}}]}}}]
        answers = client.msearch(index=alias, body=lines)["responses"]
        found |= {vid for (vid, _), a in zip(chunk, answers) if a["hits"]["total"]["value"] == 1}
    assert found == video_ids, sorted(video_ids - found)[:10]

    published = set(RegistryReader(alias).poll(client))
    unpublished = {sid for ids in docs.values() for sid in ids} - published
    assert not unpublished, sorted(unpublished)[:10]


def seconds_since(t0: float) -> float:
    return round(time.monotonic() - t0, 1)
