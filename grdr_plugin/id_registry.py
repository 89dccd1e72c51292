"""Publishing new semantic IDs from ingest to every query process, through OpenSearch only.

Two small structures per catalog alias, kept in one registry index:
* one document per semantic ID ever published (``_id`` = "<alias>|<id>"), written with
  ``op_type=create`` so an ID is registered once whoever publishes it;
* one counter document per alias (``_id`` = "<alias>|__generation__") bumped after each publish.

A query process does a cheap real-time GET of the counter; only when it moved does it search the
ID documents newer than what it has seen (by ``_seq_no``, re-reading an overlap so that publishes
that became visible out of order are not missed). Query processes on any machine agree because
they all read the same index; none talks to another.

Sequence numbers count up only within one primary term. When the registry's primary is lost and a
replica is promoted (a new term), the new primary numbers on from its own history: operations the
old primary had numbered but never replicated are gone (their publishers were never acknowledged
and publish again), and their numbers are handed out anew, possibly below what a reader already saw
on the old primary. So "moved" means the counter's (primary term, seq_no) changed, not its value
(which such a loss can roll back), and a reader that sees a new term reads the alias's IDs again
from the start: rare, and a few MB at most.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from opensearchpy import helpers
from opensearchpy.exceptions import TransportError

REGISTRY_INDEX = "grdr-id-registry"
_COUNTER = "__generation__"
# IDs per bulk request when publishing: the documents are tiny, so a request stays ~200 KB.
PUBLISH_CHUNK = 2000
# IDs per page when a query process reads what was published since its last poll (~0.5 MB a page).
READ_PAGE = 5000
# How many sequence numbers behind the newest seen we re-read on each change (out-of-order visibility):
# concurrent publishers' bulk requests (PUBLISH_CHUNK IDs each) become visible out of order, and
# re-reading two requests' worth is cheap.
SEQ_OVERLAP = 4096

REGISTRY_BODY = {
    # auto_expand_replicas 0-1: a replica as soon as a second data node exists (the registry survives a node
    # loss), none on one node (where it could never be assigned and the index would stay yellow).
    "settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1", "refresh_interval": "1s"}},
    "mappings": {"dynamic": "strict", "properties": {
        "alias": {"type": "keyword"}, "semantic_id": {"type": "keyword"}, "generation": {"type": "long"},
        "count": {"type": "long"}}},
}


def ensure_registry(client) -> None:
    if not client.indices.exists(index=REGISTRY_INDEX):
        client.indices.create(index=REGISTRY_INDEX, body=REGISTRY_BODY, ignore=400)  # 400: created concurrently


def forget(client, names: Iterable[str]) -> None:
    """Drop the registry rows (IDs and generation counter) published under these aliases/indices."""
    client.delete_by_query(index=REGISTRY_INDEX, body={"query": {"terms": {"alias": sorted(set(names))}}},
                           ignore=[404], refresh=True, conflicts="proceed")


def _doc_id(alias: str, semantic_id: str) -> str:
    return f"{alias}|{semantic_id}"


def publish_ids(client, alias: str, semantic_ids: Iterable[str]) -> int:
    """Register IDs (idempotent), make them visible, then bump the generation. Returns the new generation."""
    ensure_registry(client)
    unique = sorted(set(semantic_ids))
    actions = ({"_op_type": "create", "_index": REGISTRY_INDEX, "_id": _doc_id(alias, s),
                "_source": {"alias": alias, "semantic_id": s}} for s in unique)
    # 409 = already registered: expected and harmless, so conflicts are not errors here.
    # refresh=True (not wait_for): the registry is tiny, and publishing must not wait a refresh interval.
    _, errors = helpers.bulk(client, actions, chunk_size=PUBLISH_CHUNK, raise_on_error=False, refresh=True)
    failed = [e for e in errors if e.get("create", {}).get("status") != 409]
    if failed:  # an unregistered ID is invisible to query processes: fail, so ingest retries the batch
        status = failed[0].get("create", {}).get("status")
        raise TransportError(status if isinstance(status, int) else "N/A",
                             f"ID registry: {len(failed)} of {len(unique)} IDs not registered for {alias!r}",
                             failed[0])
    resp = client.update(index=REGISTRY_INDEX, id=_doc_id(alias, _COUNTER), retry_on_conflict=10,
                         body={"script": {"source": "ctx._source.generation += 1", "lang": "painless"},
                               "upsert": {"alias": alias, "generation": 1}, "_source": True},
                         refresh=True)
    return int(resp["get"]["_source"]["generation"])


@dataclass(frozen=True)
class Head:
    """An alias's generation counter as last written: its value and that write's place in the registry shard's
    history (every publish moves the pair, also when a fail-over rolled the value back). Never written: zeros."""

    generation: int = 0
    primary_term: int = 0
    seq_no: int = -1


def read_head(client, alias: str) -> Head:
    resp = client.get(index=REGISTRY_INDEX, id=_doc_id(alias, _COUNTER), ignore=404, realtime=True)
    if not resp.get("found"):
        return Head()
    return Head(int(resp["_source"]["generation"]), int(resp["_primary_term"]), int(resp["_seq_no"]))


def current_generation(client, alias: str) -> int:
    return read_head(client, alias).generation


def _max_seq_no(client, alias: str) -> int:
    resp = client.search(index=REGISTRY_INDEX, body={"size": 1, "query": {"term": {"alias": alias}},
                                                     "sort": [{"_seq_no": "desc"}], "seq_no_primary_term": True,
                                                     "_source": False})
    hits = resp["hits"]["hits"]
    return int(hits[0]["_seq_no"]) if hits else -1


@dataclass
class RegistryReader:
    """Follows one alias's published IDs; each query process keeps its own reader.

    It returns candidate IDs (possibly already known: the overlap re-reads some, a new primary term all);
    the caller dedups.
    """

    alias: str
    generation: int = -1
    max_seq_no: int = -1
    head: Optional[Head] = None  # the counter as last read (None: never read)

    def start_at_head(self, client) -> None:
        """Skip what is already published (call just before building a base from the catalog index)."""
        ensure_registry(client)
        self.head = read_head(client, self.alias)
        self.generation = self.head.generation
        self.max_seq_no = _max_seq_no(client, self.alias)

    def poll(self, client) -> list[str]:
        """IDs published since the last poll, plus a re-read overlap; [] when the counter has not moved."""
        if not client.indices.exists(index=REGISTRY_INDEX):
            return []
        head = read_head(client, self.alias)
        if head == self.head:
            return []
        if self.head is None or head.primary_term != self.head.primary_term:
            self.max_seq_no = -1  # a new primary may reuse seq_nos this reader saw (module doc): read all again
        query = {"bool": {"filter": [{"term": {"alias": self.alias}}, {"exists": {"field": "semantic_id"}},
                                     {"range": {"_seq_no": {"gt": self.max_seq_no - SEQ_OVERLAP}}}]}}
        body = {"size": READ_PAGE, "query": query, "sort": [{"_seq_no": "asc"}], "seq_no_primary_term": True,
                "_source": ["semantic_id"]}
        found: list[str] = []
        while True:
            hits = client.search(index=REGISTRY_INDEX, body=body)["hits"]["hits"]
            found.extend(h["_source"]["semantic_id"] for h in hits)
            if hits:
                self.max_seq_no = max(self.max_seq_no, max(int(h["_seq_no"]) for h in hits))
            if len(hits) < body["size"]:
                break
            body["search_after"] = hits[-1]["sort"]
        self.head, self.generation = head, head.generation
        return found
