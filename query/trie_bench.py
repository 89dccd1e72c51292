"""How long the query layer takes to build its base trie from OpenSearch, at catalog sizes up to 1M+.

    python -m query.trie_bench --videos 1000000 [--views 4 --levels 3 --codebook 64] [--json]

The base build reads only the ID field (a composite aggregation over `grdr_ids`), so this indexes
documents that carry just that field, bulk-loaded with opensearch-py, into a scratch index,
times `TrieStore.build()` on it, and drops it.  IDs are drawn uniformly from the C^L slots: for a
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

from grdr_plugin.index import ID_FIELD
from grdr_plugin.settings import Settings
from query.trie_store import TrieStore


def id_documents(index: str, videos: int, views: int, levels: int, codebook: int, seed: int) -> Iterator[dict]:
    rng = np.random.default_rng(seed)
    for start in range(0, videos, 100_000):
        codes = rng.integers(0, codebook, (min(100_000, videos - start), views, levels))
        for i, video in enumerate(codes):
            ids = sorted({"-".join(map(str, view)) for view in video})
            yield {"_index": index, "_id": f"v{start + i}", "_source": {ID_FIELD: ids}}


def run(videos: int, views: int, levels: int, codebook: int, seed: int = 0,
        settings: Settings | None = None) -> dict[str, Any]:
    client = (settings or Settings()).opensearch_client()
    index = f"grdr-trie-bench-{uuid.uuid4().hex[:8]}"
    client.indices.create(index=index, body={
        "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"},
        "mappings": {"properties": {ID_FIELD: {"type": "keyword"}}}})
    try:
        t0 = time.perf_counter()
        ok, _ = helpers.bulk(client, id_documents(index, videos, views, levels, codebook, seed),
                             chunk_size=10_000, request_timeout=300)
        client.indices.refresh(index=index)
        client.indices.forcemerge(index=index, max_num_segments=1, request_timeout=600)
        load_s = time.perf_counter() - t0
        store = TrieStore(client, index, levels=levels, codebook_size=codebook).build()
        return {"videos": videos, "indexed": ok, "distinct_ids": len(store), "load_s": round(load_s, 1),
                "trie_build_s": round(store.build_seconds, 2), "trie_ram_mb": round(store.memory_bytes() / 2**20, 2)}
    finally:
        client.indices.delete(index=index, ignore=[404])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--codebook", type=int, default=64)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    results = [run(n, a.views, a.levels, a.codebook) for n in a.videos]
    for r in results:
        print(f"{r['videos']:>10,} videos  {r['distinct_ids']:>8,} IDs  trie built in {r['trie_build_s']} s "
              f"({r['trie_ram_mb']} MB; loading the scratch index took {r['load_s']} s)")
    if a.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
