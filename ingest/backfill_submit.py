"""Backfill, the submitting side (what `grdr backfill` does): check the index and the features, find the
documents, queue batches for the Celery workers, and (`ingest.submit.wait`) collect their summaries.

Documents whose features are a vector field of the index are found by paging over their `_id`s in a
point-in-time (`--missing`: only those without grdr's fields, so an interrupted or later run fills what is
left);
a dataset folder or video files are planned as `grdr ingest` plans them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Optional

from grdr_plugin.feature_space import check_vector_field, read_feature_space
from grdr_plugin.index import IndexSpec, flat_fields, resolve, served_meta, validate_user_index
from ingest.backfill import BackfillBatch, BackfillSource, BackfillTarget, DocIds
from ingest.config import get_ingest_settings
from ingest.refit import Refit
from ingest.submit import Submitted, send

# _ids per page: with _source off a page is ~100 KB, and few round trips find a million documents.
ID_PAGE = 5000
PIT_KEEPALIVE = "5m"  # between pages of the point-in-time: far beyond one page's round trip


def prepare_backfill(client, name: str, model_dir: str | Path, *, features_field: Optional[str] = None,
                     refit: Optional[Refit] = None) -> BackfillTarget:
    """Where a backfill of `name` writes; refuses an index this model is not attached to, and a features field
    that is not a vector of the model's dimension and space. refit: write the refit's new fields instead."""
    model_dir = Path(model_dir).resolve()
    spec = IndexSpec.from_model_dir(model_dir)
    resolved = resolve(client, validate_user_index(name))
    if refit is not None:
        fields, publish_as = refit.fields, refit.publish_as
    else:
        meta, _ = served_meta(client, resolved, spec.fingerprint, model_dir)
        if meta.mode != "attached":
            raise ValueError(f"--index: {name} is a grdr catalog; fill it with `grdr ingest`")
        fields, publish_as = meta.fields, meta.registry_key or name
    normalise = False
    if features_field is not None:
        space = read_feature_space(model_dir)
        mappings = client.indices.get_mapping(index=",".join(resolved.indices))
        for index in resolved.indices:
            props = flat_fields(mappings[index]["mappings"].get("properties") or {})
            check_vector_field(features_field, props.get(features_field), space, index=index)
        normalise = space.normalise
    return BackfillTarget(index=",".join(resolved.indices), alias=name, publish_as=publish_as,
                          fingerprint=spec.fingerprint, model_dir=str(model_dir), fields=fields,
                          features_field=features_field, normalise=normalise)


def plan_documents(client, target: BackfillTarget, *, missing: bool,
                   batch_size: int) -> list[tuple[BackfillSource, int]]:
    """Batches of the index's documents (`missing`: only those without grdr's fields), by _id."""
    client.indices.refresh(index=target.alias)  # documents written before the backfill started are found
    query = {"bool": {"must_not": [{"exists": {"field": target.fields.ids}}]}} if missing else {"match_all": {}}
    ids = list(dict.fromkeys(doc_ids(client, target.alias, query)))  # an alias may hold an _id twice: one record
    return [(DocIds(ids=ids[i:i + batch_size]), len(ids[i:i + batch_size])) for i in range(0, len(ids), batch_size)]


def doc_ids(client, name: str, query: dict[str, Any]) -> Iterator[str]:
    """The _ids of the documents matching `query`, paged with search_after in a point-in-time.

    Not a scroll (opensearch-py's helpers.scan): on k-NN 3.5 clearing a scroll over an index with
    index.knn: true leaves its shards failing every later search that fetches _source (found on the local
    node); a point-in-time does not."""
    pit = client.create_pit(index=name, params={"keep_alive": PIT_KEEPALIVE})["pit_id"]
    try:
        body: dict[str, Any] = {"size": ID_PAGE, "_source": False, "query": query, "track_total_hits": False,
                                "pit": {"id": pit, "keep_alive": PIT_KEEPALIVE}, "sort": ["_shard_doc"]}
        while True:
            hits = client.search(body=body)["hits"]["hits"]
            yield from (hit["_id"] for hit in hits)
            if len(hits) < ID_PAGE:
                return
            body["search_after"] = hits[-1]["sort"]
    finally:
        client.delete_pit(body={"pit_id": [pit]})


def enqueue_backfill(batches: list[tuple[BackfillSource, int]], target: BackfillTarget, *,
                     image_encoder: Optional[str] = None, refit: Optional[Refit] = None,
                     queue: Optional[str] = None) -> Submitted:
    """Send the batches (to `queue`, default GRDR_INGEST_QUEUE); with a refit, as a chord whose callback switches
    clients to the new model once every batch has succeeded, whether or not anyone waits."""
    from ingest.tasks import backfill_batch, finish_refit_task

    queue = queue or get_ingest_settings().queue
    sigs = [backfill_batch.s(BackfillBatch(target=target, source=src, size=n, image_encoder=image_encoder)
                             .model_dump()).set(queue=queue) for src, n in batches]
    callback = finish_refit_task.s(refit.model_dump()).set(queue=queue) if refit is not None else None
    return send(sigs, [n for _, n in batches], target, queue, callback)
