"""Index documents of a batch: semantic IDs, their prefixes, the rerank vector, catalog metadata.

Each `_source` is serialised here, not by opensearch-py: the vectors of a whole batch are
formatted in one numpy call (np.savetxt, C speed), and the rest with json. That halves the
CPU time per document and the bytes per bulk request compared with json.dumps(vec.tolist()).
"""
from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

from grdr_plugin.index import ID_FIELD, PREFIX_FIELD, VECTOR_FIELD
from grdr_plugin.model.ids import format_ids, proper_prefixes
from ingest.config import IngestSettings


def semantic_ids(codes: np.ndarray) -> list[list[str]]:
    """codes [N, K, L] -> per video its distinct IDs, in view order (views may collide)."""
    return [list(dict.fromkeys(ids)) for ids in format_ids(codes)]


def prefixes(ids: Sequence[str]) -> list[str]:
    """All proper prefixes of the IDs ("12-201-7" -> "12", "12-201"), distinct, for pool widening."""
    return list(dict.fromkeys(p for sid in ids for p in proper_prefixes(sid)))


def vector_strings(vectors: np.ndarray, digits: int) -> list[str]:
    """Each row as a JSON array body "a,b,c" with `digits` significant digits."""
    buf = io.StringIO()
    np.savetxt(buf, np.asarray(vectors, dtype=np.float32), fmt=f"%.{digits}g", delimiter=",")
    return buf.getvalue().splitlines()


def build_sources(metas: Sequence[dict[str, Any]], codes: np.ndarray, vectors: np.ndarray,
                  digits: int = IngestSettings.model_fields["vector_digits"].default
                  ) -> tuple[list[str], list[list[str]]]:
    """-> (one JSON `_source` string per video, its semantic IDs)."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    ids = semantic_ids(codes)
    vecs = vector_strings(vectors, digits)
    out = []
    for meta, vid_ids, vec in zip(metas, ids, vecs):
        doc = {**meta, ID_FIELD: vid_ids, PREFIX_FIELD: prefixes(vid_ids), "ingested_at": now}
        out.append(f'{json.dumps(doc, ensure_ascii=False)[:-1]},"{VECTOR_FIELD}":[{vec}]}}')
    return out, ids
