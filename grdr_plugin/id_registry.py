"""Publishing new semantic IDs from ingest to every query process, through OpenSearch only.

Two small structures per catalog alias, kept in one registry index:
* one document per semantic ID ever published (``_id`` = "<alias>|<id>"), written with
  ``op_type=create`` so an ID is registered once whoever publishes it;
* one counter document per alias (``_id`` = "<alias>|__generation__") bumped after each publish.

A query process does a cheap real-time GET of the counter; only when it moved does it search the
ID documents newer than what it has seen (by ``_seq_no``, re-reading an overlap so that publishes
that became visible out of order are not missed). Query processes on any machine agree because
they all read the same index; none talks to another.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

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


def current_generation(client, alias: str) -> int:
    resp = client.get(index=REGISTRY_INDEX, id=_doc_id(alias, _COUNTER), ignore=404, realtime=True)
    return int(resp["_source"]["generation"]) if resp.get("found") else 0


def _max_seq_no(client, alias: str) -> int:
    resp = client.search(index=REGISTRY_INDEX, body={"size": 1, "query": {"term": {"alias": alias}},
                                                     "sort": [{"_seq_no": "desc"}], "seq_no_primary_term": True,
                                                     "_source": False})
    hits = resp["hits"]["hits"]
    return int(hits[0]["_seq_no"]) if hits else -1


@dataclass
class RegistryReader:
    """Follows one alias's published IDs; each query process keeps its own reader.

    It returns candidate IDs (possibly already known: the overlap re-reads some); the caller dedups.
    """

    alias: str
    generation: int = -1
    max_seq_no: int = -1

    def start_at_head(self, client) -> None:
        """Skip what is already published (call just before building a base from the catalog index)."""
        ensure_registry(client)
        self.generation = current_generation(client, self.alias)
        self.max_seq_no = _max_seq_no(client, self.alias)

    def poll(self, client) -> list[str]:
        """IDs published since the last poll, plus a re-read overlap; [] when the generation has not moved."""
        if not client.indices.exists(index=REGISTRY_INDEX):
            return []
        gen = current_generation(client, self.alias)
        if gen == self.generation:
            return []
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
        self.generation = gen
        return found
