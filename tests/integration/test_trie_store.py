"""Valid-ID store against the real node: base from the index, delta from the ID registry."""
import time

import numpy as np
import pytest
from opensearchpy import helpers

from grdr_plugin import id_registry
from grdr_plugin import index as gi
from query.trie_store import TrieStore, id_counts


def fill(client, alias, ids_per_doc):
    gi.create_index(client, alias, gi.IndexSpec(rerank_dim=4, fingerprint="trie-test-fingerprint"))
    helpers.bulk(client, ({"_index": alias, "_id": f"v{i}",
                           "_source": {"video_id": f"v{i}", "grdr_ids": ids, "grdr_vec": [1.0, 0, 0, 0]}}
                          for i, ids in enumerate(ids_per_doc)), refresh="wait_for")


def test_base_is_built_from_the_index_with_video_counts(client, alias, tmp_path):
    fill(client, alias, [["1-2-3", "4-5-6"], ["1-2-3"], ["7-0-1"]])
    store = TrieStore(client, alias, levels=3, codebook_size=8, cache_dir=tmp_path).build()
    assert len(store) == 3 and "1-2-3" in store and "1-2-4" not in store
    trie = store.snapshot
    assert trie.video_count("1-2-3") == 2 and trie.video_count("7-0-1") == 1
    assert trie.prefix_count("1") == 2 and trie.prefix_count("4-5") == 1
    level1, level2, level3 = trie.tables
    np.testing.assert_array_equal(level1, [1, 4, 7])
    assert (1 * 8 + 2) * 8 + 3 in level3
    assert store.memory_bytes() > 0


class _RecordingClient:
    """The real client, noting each request body (to see which partitionings were read)."""

    def __init__(self, client):
        self.client, self.bodies = client, []

    def search(self, **kw):
        self.bodies.append(kw["body"])
        return self.client.search(**kw)


def test_id_counts_reads_every_id_once_whatever_the_partitioning(client, alias):
    """Hash partitions of at most `page` IDs: a partition that overflows is read again finer, so
    every ID comes back exactly once with its video count, for any page size."""
    rng = np.random.default_rng(7)
    docs = [sorted({"-".join(map(str, rng.integers(0, 8, 3))) for _ in range(3)}) for _ in range(400)]
    fill(client, alias, docs)
    truth: dict[str, int] = {}
    for ids in docs:
        for sid in ids:
            truth[sid] = truth.get(sid, 0) + 1
    for page in (5000, 40, 7):
        rec = _RecordingClient(client)
        pairs = id_counts(rec, alias, page=page)
        assert len(pairs) == len(truth) and dict(pairs) == truth
        parts = {b["aggs"]["ids"]["terms"]["include"]["num_partitions"] for b in rec.bodies if "ids" in b["aggs"]}
        assert (parts == {1}) if page == 5000 else min(parts) >= len(truth) / page
        if page == 7:  # ~65 IDs per partition on average: some overflowed, and were read again finer
            assert len(parts) > 1


def test_published_ids_reach_another_process_store_quickly(client, alias, tmp_path):
    fill(client, alias, [["1-1-1"]])
    store = TrieStore(client, alias, levels=3, codebook_size=8, cache_dir=tmp_path, poll_interval_s=0.2).build()
    assert store.refresh(force=True) == 0  # nothing new yet
    before = store.snapshot
    assert before.masks[2].sum() == 1 and not before.masks[2][2 * 8 + 2, 2]
    t0 = time.perf_counter()
    id_registry.publish_ids(client, alias, ["2-2-2", "3-3-3", "1-1-1"])
    published = time.perf_counter()
    while "2-2-2" not in store:
        store.refresh()
        assert time.perf_counter() - published < 2.0, "a published ID must be visible within 2 s"
        time.sleep(0.05)
    visible = time.perf_counter() - published
    assert "3-3-3" in store and len(store) == 3
    after = store.snapshot
    assert 2 * 64 + 2 * 8 + 2 in after.tables[2]
    assert after.masks[2][2 * 8 + 2, 2] and after.masks[2].sum() == 3  # the decoder graph's view follows
    assert "2-2-2" not in before and before.masks[2].sum() == 1  # a snapshot taken earlier is left as it was
    # Re-publishing known IDs adds nothing; folding keeps every ID and empties the delta.
    id_registry.publish_ids(client, alias, ["2-2-2"])
    assert store.refresh(force=True) == 0
    store.fold()
    assert not store.snapshot.delta and len(store) == 3 and store.snapshot.video_count("1-1-1") == 1
    print(f"publish took {published - t0:.3f}s; visible to the other store {visible:.3f}s later")


def test_two_readers_agree_without_talking(client, alias, tmp_path):
    fill(client, alias, [["5-5-5"]])
    a = TrieStore(client, alias, levels=3, codebook_size=8, cache_dir=tmp_path / "a").build()
    b = TrieStore(client, alias, levels=3, codebook_size=8, cache_dir=tmp_path / "b").build()
    id_registry.publish_ids(client, alias, [f"{i}-{j}-0" for i in range(4) for j in range(4)])
    a.refresh(force=True)
    b.refresh(force=True)
    a_ids, b_ids = (set(s.snapshot.base.keys()) | set(s.snapshot.delta) for s in (a, b))
    assert a_ids == b_ids
    assert len(a) == 17


def test_a_registry_write_that_fails_is_raised_not_dropped(client, alias):
    """An ID the registry refused would be invisible to every query process: publishing must fail loudly."""
    from opensearchpy.exceptions import TransportError

    id_registry.ensure_registry(client)
    client.indices.put_settings(index=id_registry.REGISTRY_INDEX, body={"index.blocks.write": True})
    try:
        with pytest.raises(TransportError, match="not registered"):
            id_registry.publish_ids(client, alias, ["7-7-7"])
    finally:
        client.indices.put_settings(index=id_registry.REGISTRY_INDEX, body={"index.blocks.write": False})


def test_dropping_a_catalog_forgets_its_registry_rows(client, alias):
    """A re-created catalog of the same name must not inherit the dropped one's IDs."""
    gi.create_index(client, alias, gi.IndexSpec(rerank_dim=4, fingerprint="f" * 16))
    id_registry.publish_ids(client, alias, ["1-1-1", "2-2-2"])
    id_registry.publish_ids(client, f"{alias}x", ["3-3-3"])  # a name that merely starts the same way
    gi.drop_index(client, alias)
    left = client.search(index=id_registry.REGISTRY_INDEX, body={"query": {"prefix": {"alias": alias}}, "size": 10})
    assert [h["_source"]["alias"] for h in left["hits"]["hits"]] == [f"{alias}x"] * 2  # its ID and its counter
    id_registry.forget(client, [f"{alias}x"])
