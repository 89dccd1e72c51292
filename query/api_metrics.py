"""The HTTP API's Prometheus metrics (`GET /metrics`), with prometheus-client.

One registry per app (two apps in one process, as in tests, never share counts):

| metric | type | labels |
|---|---|---|
| `grdr_http_requests_total` | counter | method, route, status |
| `grdr_http_errors_total` | counter (status >= 400) | method, route, status |
| `grdr_http_request_seconds` | histogram | method, route |
| `grdr_search_stage_seconds` | histogram | stage: encode, decode, opensearch, total |
| `grdr_trie_ids` | gauge | valid semantic IDs the query process knows |
| `grdr_trie_generation` | gauge | the ID registry generation it has read up to |
| `grdr_registry_poll_age_seconds` | gauge | seconds since its last registry poll that answered |
| `process_*` | prometheus-client's process collector | |

`route` is the route's template (`/ids/{semantic_id}/videos`), `unmatched` for a path no route has,
so a scan of random paths cannot grow the label set.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from query.trie_store import TrieStore

UNMATCHED = "unmatched"
# A search stage takes ~1-10 ms (encode ~5, decode ~2, OpenSearch ~6 on 2 cores) and a slow one ~1 s:
# buckets from 0.5 ms to 10 s keep both ends readable (prometheus-client's default starts at 5 ms).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _TrieCollector(Collector):
    """Read at scrape time from the store a search would use (None until the searcher is connected)."""

    def __init__(self, store: Callable[[], TrieStore | None]) -> None:
        self._store = store

    def collect(self) -> Iterable[GaugeMetricFamily]:
        store = self._store()
        if store is None:
            return
        yield GaugeMetricFamily("grdr_trie_ids", "valid semantic IDs this query process knows", value=len(store))
        yield GaugeMetricFamily("grdr_trie_generation", "ID registry generation this query process has read up to",
                                value=store.generation)
        yield GaugeMetricFamily("grdr_registry_poll_age_seconds",
                                "seconds since the last ID registry poll that answered (searches and scrapes poll "
                                "at most every poll interval: growing past it means polls fail)",
                                value=time.monotonic() - store.polled_at)


class ApiMetrics:
    def __init__(self, store: Callable[[], TrieStore | None]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("grdr_http_requests_total", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.errors = Counter("grdr_http_errors_total", "HTTP requests answered with a 4xx or 5xx",
                              ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("grdr_http_request_seconds", "time from request to response", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stages = Histogram("grdr_search_stage_seconds", "time per stage of a search", ["stage"],
                                buckets=LATENCY_BUCKETS, registry=self.registry)
        ProcessCollector(registry=self.registry)
        self.registry.register(_TrieCollector(store))

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        if status >= 400:
            self.errors.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def search(self, timings_ms: Mapping[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.stages.labels(stage).observe(ms / 1000)

    def exposition(self) -> tuple[bytes, str]:
        """(the text format, its content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
