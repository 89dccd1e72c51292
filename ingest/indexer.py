"""Bulk-write one batch of documents with opensearch-py's streaming_bulk.

* `_id` = video_id, op "index": re-ingest overwrites; the per-item `result` tells created from updated.
  (`bulk_write` sends any prepared actions under the same rules: a backfill's partial `update`s.)
* Items answered 429/5xx, and requests that failed to connect or time out, are retried with
  exponential backoff + full jitter; after `max_retries` the remaining items raise
  TransientOpenSearchError so that Celery retries the (idempotent) batch later. The chunk size and
  the retry policy come from the caller (`ingest.config.IngestSettings` owns their defaults).
* Any other per-item rejection (e.g. a mapping error) becomes a per-record failure with
  OpenSearch's reason; the good documents of the batch are indexed regardless.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from opensearchpy import helpers

from grdr_plugin.index import KEYWORD_IGNORE_ABOVE
from ingest.config import IngestSettings
from ingest.retry import TransientOpenSearchError, backoff_s, is_retryable, is_retryable_status
from ingest.schemas import RecordError

log = logging.getLogger(__name__)


@dataclass
class BulkOutcome:
    created: list[int] = field(default_factory=list)  # positions in the input
    updated: list[int] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class RetryPolicy:
    max_retries: int
    initial_s: float
    max_s: float
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> RetryPolicy:
        return cls(settings.bulk_max_retries, settings.bulk_initial_backoff_s, settings.bulk_max_backoff_s)


def _reason(item: dict) -> str:
    err = item.get("error") or {}
    prefix = f"rejected by OpenSearch ({item.get('status')})"
    if isinstance(err, dict):
        return f"{prefix}: {err.get('type', 'error')}: {err.get('reason', '')}".strip()
    return f"{prefix}: {err}"


Action = tuple[dict, str]  # (the bulk action line, e.g. {"index": {"_index", "_id"}}, the body line as JSON)


def _as_is(action: Action) -> Action:
    return action


def bulk_index(client, index: str, ids: Sequence[str], sources: Sequence[str], *, chunk_size: int,
               policy: RetryPolicy) -> BulkOutcome:
    """Index sources[i] (a JSON string) under _id ids[i]; see the module doc for the retry rules."""
    actions = [({"index": {"_index": index, "_id": i}}, src) for i, src in zip(ids, sources)]
    return bulk_write(client, actions, chunk_size=chunk_size, policy=policy, target=index)


def bulk_write(client, actions: Sequence[Action], *, chunk_size: int, policy: RetryPolicy,
               target: str) -> BulkOutcome:
    """Send prepared bulk actions (index or update) with the module doc's retry rules; outcome positions are
    positions in `actions`. target: what the actions write to, for the log."""
    out = BulkOutcome()
    pending = list(range(len(actions)))
    attempt = 0
    while pending:
        retry: list[int] = []
        answered = 0
        todo = (actions[i] for i in pending)
        try:
            # max_retries=0: we retry ourselves, so that 5xx items and jitter are covered too.
            for ok, result in helpers.streaming_bulk(client, todo, chunk_size=chunk_size, max_retries=0,
                                                     raise_on_error=False, raise_on_exception=True, yield_ok=True,
                                                     expand_action_callback=_as_is):
                pos = pending[answered]
                answered += 1
                item = next(iter(result.values()), {})  # {"index": item} or {"update": item}
                if ok:
                    (out.created if item.get("result") == "created" else out.updated).append(pos)
                elif is_retryable_status(item.get("status")):
                    retry.append(pos)
                else:
                    out.failed.append((pos, _reason(item)))
        except Exception as exc:  # noqa: BLE001 - classified right below
            if not is_retryable(exc):
                raise
            retry.extend(pending[answered:])  # the chunk in flight got no answer
            last_error = exc
        else:
            last_error = None
        if not retry:
            break
        if attempt >= policy.max_retries:
            tries = f"after {attempt + 1} attempts"
            why = f"not indexed {tries} ({last_error!r})" if last_error else f"still rejected with 429/5xx {tries}"
            raise TransientOpenSearchError(f"{len(retry)} documents {why}")
        pause = backoff_s(attempt, policy.initial_s, policy.max_s)
        # Logged so that an operator sees an overloaded or unreachable node before the task gives up.
        log.warning("bulk retry %d of %d: %d documents to %s in %.2f s (%s)", attempt + 1, policy.max_retries,
                    len(retry), target, pause, repr(last_error) if last_error else "429/5xx items")
        policy.sleep(pause)
        attempt += 1
        pending = retry
    return out


# ---- the errors index: every per-record failure, for runs nobody waited on ----

ERRORS_BODY = {
    "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
    "mappings": {"properties": {
        "alias": {"type": "keyword"}, "index": {"type": "keyword"}, "video_id": {"type": "keyword"},
        "reason": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}}},
        "task_id": {"type": "keyword"}, "at": {"type": "date"}}},
}


def record_errors(client, errors_index: str, alias: str, index: str, task_id: str,
                  errors: Sequence[RecordError]) -> None:
    """Append failures to the errors index (created on first use). Best effort: the summary has them too."""
    if not errors:
        return
    if not client.indices.exists(index=errors_index):
        client.indices.create(index=errors_index, body=ERRORS_BODY, ignore=400)  # 400: created concurrently
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    docs = ({"_index": errors_index, "_source": {"alias": alias, "index": index, "video_id": e.video_id,
                                                 "reason": e.reason, "task_id": task_id, "at": at}}
            for e in errors)
    helpers.bulk(client, docs, raise_on_error=False)
