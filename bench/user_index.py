"""A user-shaped video index, for the "I already have a video index" quickstart and its tests.

Not grdr's mapping: the index a team already runs. Its own text, keyword, date and numeric fields (one
inside an object), its own `_meta`, a vector field from its own encoder (`clip_vec`: the dataset's pooled
features, with an ANN graph as a team serving k-NN would have), an alias its clients read, and no grdr
field. Channel, publication date and views are derived from each video's row, so filters have answers.

    python -m bench.user_index --dataset ../shared/datasets/tvr-proxy/msrvtt --index my-videos-2024 --alias my-videos
"""
from __future__ import annotations

import argparse
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
from opensearchpy import helpers

CHANNELS = ("news", "sports", "music", "cooking", "travel", "gaming", "kids")
FIRST_DAY = date(2024, 1, 1)
VECTOR_FIELD = "clip_vec"


def user_index_body(dim: int) -> dict[str, Any]:
    return {
        "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0, "knn": True}},
        "mappings": {
            "_meta": {"owner": "video-platform", "schema": 7},
            "properties": {
                "title": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 256}}},
                "channel": {"type": "keyword"},
                "published": {"type": "date"},
                "stats": {"properties": {"views": {"type": "long"}, "rating": {"type": "float"}}},
                # lucene: an ANN graph every node can build (no native library needed)
                VECTOR_FIELD: {"type": "knn_vector", "dimension": dim,
                               "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}},
            },
        },
    }


def user_document(row: int, entry: dict[str, Any], vector: Optional[np.ndarray]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "title": entry.get("title") or entry["video_id"],
        "channel": CHANNELS[row % len(CHANNELS)],
        "published": (FIRST_DAY + timedelta(days=row * 37 % 365)).isoformat(),
        "stats": {"views": row * 7919 % 100_000, "rating": round(1 + row * 13 % 40 / 10, 1)},
    }
    if vector is not None:
        doc[VECTOR_FIELD] = [float(v) for v in vector]
    return doc


def documents(dataset: Path, rows: Sequence[int], without_vector: Sequence[str] = ()) -> Iterator[tuple[str, dict]]:
    """(video_id, document) for the given catalog rows of a dataset folder."""
    lines = [json.loads(line) for line in (dataset / "catalog.jsonl").read_text().splitlines() if line.strip()]
    feats = np.load(dataset / "features.npy", mmap_mode="r")
    for row in rows:
        entry = lines[row]
        vector = None if entry["video_id"] in without_vector else np.asarray(feats[row], dtype=np.float32)
        yield entry["video_id"], user_document(row, entry, vector)


def add_documents(client, index: str, dataset: Path, rows: Sequence[int], without_vector: Sequence[str] = ()) -> int:
    """Index those rows' documents as the user's own clients would (whole documents, _id = video_id)."""
    actions = ({"_index": index, "_id": vid, "_source": doc} for vid, doc in documents(dataset, rows, without_vector))
    ok, _ = helpers.bulk(client, actions, refresh=True)
    return ok


def create_user_index(client, dataset: Path, index: str, alias: Optional[str] = None, *, limit: Optional[int] = None,
                      without_vector: Sequence[str] = ()) -> int:
    """The index with the first `limit` videos of the dataset (all by default) and, optionally, an alias."""
    if client.indices.exists(index=index):
        raise ValueError(f"--index: {index} exists already; pick another name")
    n = np.load(dataset / "features.npy", mmap_mode="r").shape
    client.indices.create(index=index, body=user_index_body(int(n[1])))
    if alias:
        client.indices.put_alias(index=index, name=alias)
    return add_documents(client, index, dataset, range(min(limit or n[0], n[0])), without_vector)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Create a user-shaped video index (own mapping, vectors, alias).")
    parser.add_argument("--dataset", type=Path, required=True, help="dataset folder (catalog.jsonl + features.npy)")
    parser.add_argument("--index", required=True, help="the index to create")
    parser.add_argument("--alias", help="an alias over it, as the user's clients read")
    parser.add_argument("--limit", type=int, help="only the first N videos")
    a = parser.parse_args(argv)
    from grdr_plugin.settings import get_settings

    n = create_user_index(get_settings().opensearch_client(), a.dataset, a.index, a.alias, limit=a.limit)
    print(f"created {a.index} with {n} documents" + (f", alias {a.alias}" if a.alias else ""))


if __name__ == "__main__":
    main()
