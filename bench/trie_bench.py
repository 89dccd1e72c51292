"""How long the query layer takes to build its base trie from OpenSearch, at catalog sizes up to 1M+.

    python -m bench.trie_bench --videos 1000000 [--views 4 --levels 3 --codebook 64] [--vector-dim 256] [--json]

The base build reads only the ID field (a partitioned terms aggregation over `grdr_ids`), so this
indexes documents that carry just that field, bulk-loaded with opensearch-py, into a scratch index
(left with the segments bulk loading makes, as a live index is), times `TrieStore.build()` on it
against one pass of a composite aggregation paging through the same IDs (the obvious way to read
every term, the baseline), and drops the index.  IDs are drawn uniformly from the C^L slots: for a
fixed C that is the worst case for the trie (the most distinct IDs), e.g. 4M view IDs at 1M videos
fill nearly all 262,144 slots of C=64, L=3.
"""
from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any, Iterator

import numpy as np
from opensearchpy import helpers

from grdr_plugin.index import ID_FIELD, VECTOR_FIELD, IndexSpec, index_body
from grdr_plugin.model.ids import format_id
from grdr_plugin.settings import Settings
from query.trie_store import TrieStore

DRAW_ROWS = 100_000  # videos whose IDs are drawn per step: bounds the code and vector arrays in memory
COMPOSITE_PAGE = 10_000  # buckets per composite page: few round trips, well under search.max_buckets (65,535)
# Documents per bulk request: ID-only documents are tiny; with a vector each, 1,000 keep a request a few MB.
ID_DOCS_CHUNK = 10_000
VECTOR_DOCS_CHUNK = 1_000
REQUEST_TIMEOUT_S = 300  # a bulk request or an aggregation page over 1M+ documents on a loaded node


def id_documents(index: str, videos: int, views: int, levels: int, codebook: int, seed: int,
                 vector_dim: int = 0) -> Iterator[dict]:
    rng = np.random.default_rng(seed)
    for start in range(0, videos, DRAW_ROWS):
        codes = rng.integers(0, codebook, (min(DRAW_ROWS, videos - start), views, levels))
        vectors = rng.standard_normal((len(codes), vector_dim), dtype=np.float32).round(4)
        for i, video in enumerate(codes):
            source: dict[str, Any] = {ID_FIELD: sorted({format_id(view) for view in video})}
            if vector_dim:
                source[VECTOR_FIELD] = vectors[i].tolist()
            yield {"_index": index, "_id": f"v{start + i}", "_source": source}


def composite_pass(client, index: str, page: int = COMPOSITE_PAGE) -> tuple[float, int]:
    """Seconds and IDs of reading every ID with a composite aggregation, page after page (the
    shard request cache off, as for a first read)."""
    t0, after, n = time.perf_counter(), None, 0
    while True:
        comp: dict[str, Any] = {"size": page, "sources": [{"id": {"terms": {"field": ID_FIELD}}}]}
        if after:
            comp["after"] = after
        agg = client.search(index=index, body={"size": 0, "aggs": {"ids": {"composite": comp}}},
                            request_cache=False, request_timeout=REQUEST_TIMEOUT_S)["aggregations"]["ids"]
        n += len(agg["buckets"])
        after = agg.get("after_key")
        if not after or len(agg["buckets"]) < page:
            return time.perf_counter() - t0, n


def run(videos: int, views: int, levels: int, codebook: int, seed: int = 0, vector_dim: int = 0,
        settings: Settings | None = None) -> dict[str, Any]:
    """vector_dim > 0: documents also carry a `grdr_vec` of that size under the catalog mapping
    (`grdr_plugin.index.index_body`), so segments hold as many documents as a real index's."""
    client = (settings or Settings()).opensearch_client()
    index = f"grdr-trie-bench-{uuid.uuid4().hex[:8]}"
    body = (index_body(IndexSpec(rerank_dim=vector_dim, fingerprint="trie-bench")) if vector_dim
            else {"settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
                  "mappings": {"properties": {ID_FIELD: {"type": "keyword"}}}})
    body["settings"]["index"]["refresh_interval"] = "-1"
    client.indices.create(index=index, body=body)
    try:
        t0 = time.perf_counter()
        ok, _ = helpers.bulk(client, id_documents(index, videos, views, levels, codebook, seed, vector_dim),
                             chunk_size=VECTOR_DOCS_CHUNK if vector_dim else ID_DOCS_CHUNK,
                             request_timeout=REQUEST_TIMEOUT_S)
        client.indices.refresh(index=index)
        load_s = time.perf_counter() - t0
        store = TrieStore(client, index, levels=levels, codebook_size=codebook).build()
        composite_s, composite_ids = composite_pass(client, index)
        if composite_ids != len(store):
            raise RuntimeError(f"the composite pass read {composite_ids} IDs, the trie holds {len(store)}")
        return {"videos": videos, "indexed": ok, "distinct_ids": len(store), "load_s": round(load_s, 1),
                "segments": len(client.cat.segments(index=index, format="json")),
                "trie_build_s": round(store.build_seconds, 2), "composite_pass_s": round(composite_s, 2),
                "trie_ram_mb": round(store.memory_bytes() / 2**20, 2)}
    finally:
        client.indices.delete(index=index, ignore=[404])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codebook", type=int, default=64)
    ap.add_argument("--vector-dim", type=int, default=0,
                    help="also index a grdr_vec of this size per document (the catalog mapping), as a real index holds")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    results = [run(n, a.views, a.levels, a.codebook, vector_dim=a.vector_dim) for n in a.videos]
    for r in results:
        print(f"{r['videos']:>10,} videos  {r['distinct_ids']:>8,} IDs  trie built in {r['trie_build_s']} s "
              f"({r['trie_ram_mb']} MB); a composite-aggregation pass over the same IDs {r['composite_pass_s']} s; "
              f"{r['segments']} segments (loading the scratch index took {r['load_s']} s)")
    if a.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
