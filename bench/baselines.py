"""The systems grdr is measured against, as OpenSearch requests: exact dense (`knn_score` over every
document) and HNSW (a second index holding the same vectors in a lucene-engine graph)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from bench import defaults
from grdr_plugin.index import VECTOR_FIELD
from query.request import knn_rerank_script


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
    """The full-corpus exact dense baseline: knn_score over every document."""
    return {
        "size": k,
        "_source": False,
        "query": {"script_score": {"query": {"match_all": {}}, "script": knn_rerank_script(query_vec)}},
    }
