"""The systems grdr is measured against, as OpenSearch requests: exact dense (every document scored
exactly) and HNSW (a second index holding the same vectors in a lucene-engine graph)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from bench import defaults
from grdr_plugin.index import VECTOR_FIELD
from query.request import query_value


def hnsw_index_body(dim: int, *, m: int = defaults.HNSW_M, ef_construction: int = defaults.HNSW_EF_CONSTRUCTION,
                    ef_search: int = defaults.DEFAULT_EF_SEARCH, shards: int = 1) -> dict[str, Any]:
    """A second index for the HNSW baseline: the same vectors in a lucene-engine graph (one per shard)."""
    return {
        "settings": {"index": {"number_of_shards": shards, "number_of_replicas": 0, "knn": True,
                               "knn.algo_param.ef_search": ef_search}},
        "mappings": {
            "properties": {
                "video_id": {"type": "keyword"},
                VECTOR_FIELD: {
                    "type": "knn_vector",
                    "dimension": dim,
                    "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil",
                               "parameters": {"m": m, "ef_construction": ef_construction}},
                },
            }
        },
    }


def exact_dense_request(query_vec: np.ndarray | Sequence[float], *, k: int = 10) -> dict[str, Any]:
    """The full-corpus exact dense baseline on a grdr catalog: an unfiltered `knn` query over its vectors,
    which no graph is built for (grdr_plugin.index.FLAT_EXACT), so every document is scored exactly by
    Lucene's flat-vector scorer, the fastest exact scan the k-NN plugin has."""
    return {"size": k, "_source": False, "query": {"knn": {VECTOR_FIELD: {"vector": query_value(query_vec), "k": k}}}}
