"""grdr_plugin.id_registry's reader across a primary fail-over of the registry shard, over an in-memory shard that
numbers operations as OpenSearch does: `_seq_no` counts up within a primary term, and a promoted replica drops the
operations the lost primary never replicated and hands their numbers out again.  (The same against a real 3-node
cluster, with the node holding the registry's primary SIGKILLed: tests/integration/test_cluster_faults.py.)"""
from __future__ import annotations

from dataclasses import dataclass

from grdr_plugin.id_registry import SEQ_OVERLAP, RegistryReader

ALIAS = "videos"


@dataclass
class _Op:
    doc_id: str
    source: dict
    seq_no: int
    term: int


class _Shard:
    """The registry's one shard: its operations in order; what a reader sees is the last op of each document."""

    def __init__(self) -> None:
        self.ops: list[_Op] = []
        self.term = 1

    def _write(self, doc_id: str, source: dict) -> None:
        self.ops.append(_Op(doc_id, source, len(self.ops), self.term))

    def _docs(self) -> dict[str, _Op]:
        return {op.doc_id: op for op in self.ops}

    def publish(self, ids: list[str]) -> None:
        """What id_registry.publish_ids writes: each new ID, then the generation counter."""
        docs = self._docs()
        for s in ids:
            if f"{ALIAS}|{s}" not in docs:
                self._write(f"{ALIAS}|{s}", {"alias": ALIAS, "semantic_id": s})
        counter = docs.get(f"{ALIAS}|__generation__")
        self._write(f"{ALIAS}|__generation__",
                    {"alias": ALIAS, "generation": (counter.source["generation"] if counter else 0) + 1})

    def fail_over(self, replicated_through: int) -> None:
        """The primary is lost; its replica, which holds the ops up to `replicated_through`, is promoted."""
        del self.ops[replicated_through + 1:]
        self.term += 1


class _Indices:
    def exists(self, index: str) -> bool:
        return True


class _Client:
    """get and search as the reader sends them, answered from a _Shard."""

    def __init__(self, shard: _Shard) -> None:
        self.shard, self.indices = shard, _Indices()

    def get(self, index: str, id: str, ignore: int, realtime: bool) -> dict:
        op = self.shard._docs().get(id)
        if op is None:
            return {"found": False}
        return {"found": True, "_source": op.source, "_seq_no": op.seq_no, "_primary_term": op.term}

    def search(self, index: str, body: dict) -> dict:
        (order,) = body["sort"][0].values()
        ops = sorted((op for op in self.shard._docs().values() if _matches(op, body["query"])),
                     key=lambda op: op.seq_no, reverse=order == "desc")
        if "search_after" in body:
            ops = [op for op in ops if op.seq_no > body["search_after"][0]]
        return {"hits": {"hits": [{"_source": {"semantic_id": op.source.get("semantic_id")}, "_seq_no": op.seq_no,
                                   "_primary_term": op.term, "sort": [op.seq_no]} for op in ops[:body["size"]]]}}


def _matches(op: _Op, query: dict) -> bool:
    """The clauses the reader's searches use."""
    if "bool" in query:
        return all(_matches(op, clause) for clause in query["bool"]["filter"])
    if "term" in query:
        return all(op.source.get(field) == value for field, value in query["term"].items())
    if "exists" in query:
        return query["exists"]["field"] in op.source
    if "range" in query:
        return op.seq_no > query["range"]["_seq_no"]["gt"]
    raise AssertionError(f"a query the fake shard does not answer: {query}")


def _ids(start: int, n: int) -> list[str]:
    return [f"{i // 10000}-{i // 100 % 100}-{i % 100}" for i in range(start, start + n)]


def test_within_one_term_an_unmoved_counter_reads_nothing_and_a_moved_one_reads_only_the_tail():
    shard = _Shard()
    client = _Client(shard)
    shard.publish(_ids(0, 3 * SEQ_OVERLAP))
    reader = RegistryReader(ALIAS)
    assert set(reader.poll(client)) == set(_ids(0, 3 * SEQ_OVERLAP))
    assert reader.poll(client) == []
    shard.publish(_ids(10**5, 10))
    tail = reader.poll(client)
    assert set(_ids(10**5, 10)) <= set(tail) and len(tail) <= 10 + SEQ_OVERLAP  # the overlap, not everything


def test_after_a_fail_over_ids_numbered_below_what_the_reader_saw_still_arrive():
    shard = _Shard()
    client = _Client(shard)
    shard.publish(_ids(0, 3000))
    replicated = len(shard.ops) - 1  # the replica has the first publish, counter included
    reader = RegistryReader(ALIAS)
    reader.start_at_head(client)  # a query process that started here
    # A second publish lands on the primary, which a reader sees, but dies before the replica gets it.
    shard.publish(_ids(3000, 2 * SEQ_OVERLAP))
    assert len(reader.poll(client)) >= 2 * SEQ_OVERLAP and reader.generation == 2
    shard.fail_over(replicated)
    # Its publisher was never acknowledged and publishes again, as does another one with IDs nobody has seen;
    # the promoted copy numbers them from where its own history ends: below the reader's overlap, and the
    # generation is back at 2, the value the reader holds.
    fresh = _ids(50_000, 500)
    shard.publish(fresh)
    assert shard._docs()[f"{ALIAS}|{fresh[-1]}"].seq_no < reader.max_seq_no - SEQ_OVERLAP
    assert shard._docs()[f"{ALIAS}|__generation__"].source["generation"] == reader.generation
    assert set(fresh) <= set(reader.poll(client))
    assert reader.poll(client) == []  # and once read, the new term's counter is followed as before
