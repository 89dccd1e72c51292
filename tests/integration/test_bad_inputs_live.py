"""The bad-input corpus against the real services: a real Celery worker, OpenSearch and the HTTP app.

Ingest: one catalog batch mixes every catalog/features/video case with good records. Every good record
must be indexed and findable, every bad one reported (summary and errors index) naming its field, and
the worker must take the next task. API: every query/filter/request case goes to the FastAPI app of
`grdr serve` over that index; each gets its status with a JSON error naming the field (never a 5xx),
injection attempts change nothing, and a plain query still works afterwards.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from grdr_plugin.id_registry import REGISTRY_INDEX, RegistryReader
from ingest.config import get_ingest_settings
from ingest.schemas import Summary
from ingest.submit import enqueue, make_plan, wait
from ingest.target import prepare_target
from query.api import create_app
from query.errors import ErrorBody
from query.request import grdr_request
from query.searcher import Searcher
from tests.bad_inputs.corpus import (
    CATALOG_NAME,
    GOOD_FEATURES,
    Case,
    api_body,
    assert_names,
    catalog_lines,
    load_cases,
    names,
    write_features,
    write_good_features,
)
from tests.bad_inputs.make_videos import GOOD, make_videos
from tests.conftest import shared_dataset

CASES = load_cases()
GOOD_ROWS = 12  # msrvtt rows written as per-video features files (half pooled [D], half frames [F, D])


@dataclass
class Batch:
    path: Path  # the catalog
    good: list[str]  # video_ids that must be indexed
    bad: list[tuple[str, Case]]  # (the error's video_id, its case), one per ingest case


def mixed_batch(root: Path) -> Batch:
    """Good records first, then every ingest case of the corpus, in one catalog."""
    videos = make_videos(root / "videos")
    write_good_features(root / GOOD_FEATURES)
    msrvtt = shared_dataset("msrvtt")
    pooled, frames = np.load(msrvtt / "features.npy", mmap_mode="r"), np.load(msrvtt / "frames.npy", mmap_mode="r")
    rows = [json.loads(line) for line in (msrvtt / "catalog.jsonl").read_text().splitlines()[:GOOD_ROWS]]
    lines: list[bytes] = []
    good: list[str] = []
    for i, row in enumerate(rows):
        np.save(root / f"good-{i}.npy", np.asarray(frames[i] if i % 2 else pooled[i], dtype=np.float32))
        lines.append(json.dumps({"video_id": f"good-{i}", "features_path": f"good-{i}.npy", "title": row["title"],
                                 "tags": ["good"], "split": row["split"]}).encode())
    lines.append(json.dumps({"video_id": "good-video", "path": str(videos[GOOD]), "title": "a moving edge"}).encode())
    good += [f"good-{i}" for i in range(GOOD_ROWS)] + ["good-video"]
    bad: list[tuple[str, Case]] = []
    for case in CASES:
        if case.stage == "catalog":
            case_lines = catalog_lines(case)
            good += [case.id] * (len(case_lines) - 1)  # the lines before the bad one (a duplicate's first) are good
        elif case.stage == "features":
            write_features(case, root / f"{case.id}.npy")
            case_lines = [json.dumps({"video_id": case.id, "features_path": f"{case.id}.npy"}).encode()]
        elif case.stage == "video":
            case_lines = [json.dumps({"video_id": case.id, "path": str(videos[case.video])}).encode()]
        else:
            continue
        lines += case_lines
        bad.append((case.id if case.error_id == "id" else f"{CATALOG_NAME} line {len(lines)}", case))
    path = root / CATALOG_NAME
    path.write_bytes(b"\n".join(lines) + b"\n")
    return Batch(path, good, bad)


def ingest(client, alias, model_dir, clip, queue, catalog: Path) -> Summary:
    target = prepare_target(client, alias, model_dir)
    plan = make_plan(videos=str(catalog), batch_size=10_000)
    summary, _ = wait(enqueue(plan, target, image_encoder=str(clip), queue=queue))
    return summary


def test_a_mixed_batch_indexes_every_good_record_and_names_the_field_of_every_bad_one(
        client, ingest_alias, tiny_model_dir, tiny_clip_onnx, queue, tmp_path):
    batch = mixed_batch(tmp_path)
    assert len(batch.bad) == sum(c.stage in ("catalog", "features", "video") for c in CASES) >= 100
    summary = ingest(client, ingest_alias, tiny_model_dir, tiny_clip_onnx, queue, batch.path)

    assert (summary.indexed, summary.updated, summary.failed) == (len(batch.good), 0, len(batch.bad)), summary.errors
    reasons = {e.video_id: e.reason for e in summary.errors}
    assert Counter(e.video_id for e in summary.errors) == Counter(key for key, _ in batch.bad)
    for key, case in batch.bad:
        assert_names(case, reasons[key])

    # Every good record is a document whose IDs are published and which the query layer's request finds.
    published = set(RegistryReader(ingest_alias).poll(client))
    for vid in batch.good:
        doc = client.get(index=ingest_alias, id=vid)["_source"]
        assert set(doc["grdr_ids"]) <= published
        hits = client.search(index=ingest_alias, body=grdr_request(doc["grdr_ids"], doc["grdr_vec"], k=len(batch.good)))
        assert vid in {h["_id"] for h in hits["hits"]["hits"]}
    assert client.count(index=ingest_alias)["count"] == len(set(batch.good))

    # The errors index keeps every failure with its reason, for runs nobody waited on.
    errors_index = get_ingest_settings().errors_index
    client.indices.refresh(index=errors_index)
    stored = client.search(index=errors_index, body={"size": 1000, "query": {"term": {"alias": ingest_alias}}})
    assert {(h["_source"]["video_id"], h["_source"]["reason"]) for h in stored["hits"]["hits"]} == set(reasons.items())

    # The same worker takes the next task.
    nxt = tmp_path / "next"
    nxt.mkdir()
    write_good_features(nxt / GOOD_FEATURES)
    (nxt / CATALOG_NAME).write_text("".join(json.dumps({"video_id": f"next-{i}", "features_path": GOOD_FEATURES}) + "\n"
                                            for i in range(3)))
    after = ingest(client, ingest_alias, tiny_model_dir, tiny_clip_onnx, queue, nxt / CATALOG_NAME)
    assert (after.indexed, after.failed) == (3, 0)


def snapshot(client, alias: str) -> dict:
    """What a successful injection would change: documents (by seq_no/version), mapping, indices, side indices,
    scripts."""
    side_indices = (REGISTRY_INDEX, get_ingest_settings().errors_index)
    client.indices.refresh(index=",".join((alias, *side_indices)), ignore_unavailable=True)
    hits = client.search(index=alias, body={"size": 1000, "query": {"match_all": {}}, "_source": True,
                                            "version": True, "seq_no_primary_term": True})["hits"]["hits"]
    side = {index: client.count(index=index, body={"query": {"term": {"alias": alias}}}, ignore=[404]).get("count")
            for index in side_indices}
    scripts = client.cluster.state(metric="metadata", filter_path="metadata.stored_scripts")
    return {"docs": {h["_id"]: (h["_seq_no"], h["_version"], json.dumps(h["_source"], sort_keys=True)) for h in hits},
            "mapping": client.indices.get_mapping(index=alias),
            "indices": sorted(client.indices.get(index=f"{alias}*")),
            "side": side, "scripts": scripts}


def check(case: Case, status: int, body: dict) -> str:
    """'' if the response is what the case expects, else what is wrong."""
    if status != case.status:
        return f"{case.id}: status {status}, expected {case.status}: {json.dumps(body)[:300]}"
    if status == 200:
        hostile_text_only = not (case.body or {}).get("filters")
        return "" if isinstance(body.get("hits"), list) and (body["hits"] or not hostile_text_only) \
            else f"{case.id}: no hits for a plain-text query: {body}"
    if set(body) != set(ErrorBody.model_fields) or body["status"] != status:
        return f"{case.id}: not the API's one error shape: {json.dumps(body)[:300]}"
    located = [f"{d['field']}: {d['error']}" for d in body.get("details", [])] or [body.get("error", "")]
    if any(names(text, case.field) for text in located):
        return ""
    return f"{case.id}: {located} does not name {case.field!r}"


def test_every_bad_request_is_a_4xx_naming_its_field_and_injections_change_nothing(
        client, ingest_alias, tiny_model_dir, tiny_clip_onnx, queue, tmp_path):
    batch = mixed_batch(tmp_path)
    assert ingest(client, ingest_alias, tiny_model_dir, tiny_clip_onnx, queue, batch.path).indexed == len(batch.good)
    searcher = Searcher(tiny_model_dir, ingest_alias, client=client, beam_size=8, max_pool=40)
    api = TestClient(create_app(searcher), raise_server_exceptions=False)
    before = snapshot(client, ingest_alias)

    cases = [c for c in CASES if c.stage == "api"]
    problems = []
    for case in cases:
        resp = api.post("/search", content=api_body(case),
                        headers={"content-type": case.content_type} if case.content_type else {})
        assert resp.headers["content-type"] == "application/json", (case.id, resp.status_code, resp.text[:200])
        problems.append(check(case, resp.status_code, resp.json()))
    assert [p for p in problems if p] == []
    assert len(problems) == len(cases) and len(cases) + len(batch.bad) == len(CASES) >= 100

    assert snapshot(client, ingest_alias) == before
    ok = api.post("/search", json={"text": "a woman is running", "k": 5})
    assert ok.status_code == 200 and len(ok.json()["hits"]) == 5
