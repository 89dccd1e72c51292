"""grdr on an index the user already has, against the real node, Redis and a real Celery worker.

A user-shaped index (its own mapping with text, keyword, date and numeric fields, its own _meta, a
vector field from its own encoder, an alias, documents without grdr fields) -> attach -> backfill from
the vector field -> search with the user's filters; every user field of every document identical to
before, the document count unchanged; conflicts refused cleanly; attach again changes nothing; detach;
the refits; the README quickstart through the CLI.
"""
import json
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from bench.user_index import VECTOR_FIELD, add_documents, create_user_index
from grdr_plugin import index as gi
from grdr_plugin.attach import AttachRefused, attach, detach
from grdr_plugin.id_registry import REGISTRY_INDEX, RegistryReader
from grdr_plugin.runtime import ModelRuntime
from ingest.backfill_submit import enqueue_backfill, plan_documents, prepare_backfill
from ingest.config import get_ingest_settings
from ingest.docs import semantic_ids
from ingest.features import l2_normalise, to_model_inputs
from ingest.refit import describe, plan_refit, start_refit
from ingest.schemas import Summary
from ingest.submit import make_plan, wait
from ingest.target import prepare_target
from query.searcher import Searcher
from tests.conftest import TINY_SERVING, shared_dataset

MSRVTT = shared_dataset("msrvtt")
NO_VECTOR = "video7025.mp4"  # a document of the user's without a vector: reported, never dropped silently
INGEST_JSON_KEYS = {*Summary().public(), "index", "alias", "resent", "seconds", "videos_per_s"}


@pytest.fixture
def user(client):
    """A fresh user-shaped index name and its alias; both, grdr's copies and registry rows go afterwards."""
    name = f"test-user-{uuid.uuid4().hex[:8]}"
    yield name, f"{name}-alias"
    client.indices.delete(index=f"{name}*", ignore=[404])
    for index in (REGISTRY_INDEX, get_ingest_settings().errors_index):
        client.indices.refresh(index=index, ignore=[404])
        client.delete_by_query(index=index, body={"query": {"prefix": {"alias": name}}}, ignore=[404], refresh=True)


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory):
    """A second tiny model (another fingerprint) for refits."""
    from tests.support.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("other-model")
    build_tiny_model(out, seed=1, **TINY_SERVING)
    return out


def sources(client, index):
    """Every document's _source by _id (a search with a size beyond the test indices)."""
    client.indices.refresh(index=index)
    hits = client.search(index=index, body={"size": 1000, "query": {"match_all": {}}})["hits"]["hits"]
    return {h["_id"]: h["_source"] for h in hits}


def user_part(source, *generations):
    """A document's user fields as canonical JSON bytes (grdr's fields, of every generation given, left out)."""
    grdr = {n for fields in (gi.DEFAULT_FIELDS, *generations) for n in fields.names()}
    return json.dumps({k: v for k, v in source.items() if k not in grdr}, sort_keys=True, ensure_ascii=False).encode()


def backfill(client, name, model, queue, *, missing=False, refit=None, target_name=None):
    target = prepare_backfill(client, target_name or name, model, features_field=VECTOR_FIELD, refit=refit)
    batches = plan_documents(client, target, missing=missing or refit is not None, batch_size=64)
    return wait(enqueue_backfill(batches, target, refit=refit, queue=queue)) + (target,)


def test_attach_backfill_search_keeps_every_user_field_of_every_document(client, user, tiny_model_dir, queue):
    index, alias = user
    n = create_user_index(client, MSRVTT, index, alias, limit=240, without_vector=[NO_VECTOR])
    before = sources(client, index)
    settings_before = client.indices.get_settings(index=index)
    mapping_before = client.indices.get_mapping(index=index)[index]["mappings"]
    aliases_before = client.indices.get_alias(index=index)

    report = attach(client, alias, gi.IndexSpec.from_model_dir(tiny_model_dir))
    assert report.added == {index: ["grdr_ids", "grdr_prefixes", "grdr_vec"]}
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]
    assert {k: mapping["properties"][k] for k in mapping_before["properties"]} == mapping_before["properties"]
    assert mapping["properties"]["grdr_vec"]["method"]["engine"] == "lucene"  # the user's index has index.knn: true
    assert {k: v for k, v in mapping["_meta"].items() if k != "grdr"} == mapping_before["_meta"]
    assert mapping["_meta"]["grdr"]["fingerprint"] == ModelRuntime(tiny_model_dir).fingerprint
    again = attach(client, alias, gi.IndexSpec.from_model_dir(tiny_model_dir))
    assert again.public()["already_attached"] and client.indices.get_mapping(index=index)[index]["mappings"] == mapping

    summary, extra, target = backfill(client, alias, tiny_model_dir, queue)
    assert (summary.indexed, summary.updated, summary.failed) == (n - 1, 0, 1)
    assert summary.errors[0].video_id == NO_VECTOR and "field 'clip_vec' is missing" in summary.errors[0].reason
    assert extra == {"index": index, "alias": alias, "resent": 0}  # no batch was lost, so none was sent again

    after = sources(client, index)
    assert len(after) == n == client.count(index=alias)["count"]
    assert {vid: user_part(src) for vid, src in after.items()} == {vid: user_part(src) for vid, src in before.items()}
    assert client.indices.get_settings(index=index) == settings_before
    assert client.indices.get_alias(index=index) == aliases_before

    # grdr's fields hold what the model says for the normalised vector of each document
    rt = ModelRuntime(tiny_model_dir)
    some = [vid for vid in sorted(after) if vid != NO_VECTOR][:20]
    frames, pooled = to_model_inputs(l2_normalise(np.array([before[v][VECTOR_FIELD] for v in some], np.float32)),
                                     None, rt.cfg.frames)
    codes, vecs = rt.encode_videos(frames, pooled)
    for vid, ids, vec in zip(some, semantic_ids(codes), vecs):
        assert after[vid]["grdr_ids"] == ids
        np.testing.assert_allclose(after[vid]["grdr_vec"], vec, atol=1e-5)
    assert "grdr_ids" not in after[NO_VECTOR]
    assert {s for v in some for s in after[v]["grdr_ids"]} <= set(RegistryReader(alias).poll(client))

    searcher = Searcher(tiny_model_dir, alias, client=client, beam_size=8, max_pool=40).connect()
    assert searcher.text_fields == ("title",)  # an attached index: its own text fields
    filters = {"terms": {"channel": ["news", "sports", "music"]}, "range": {"stats.views": {"lt": 60_000},
                                                                           "published": {"gte": "2024-02-01"}}}
    res = searcher.search("a man is talking", k=10, filters=filters, source=["channel", "published", "stats"])
    assert res.hits
    for hit in res.hits:
        src = hit.source
        assert src["channel"] in ("news", "sports", "music") and src["stats"]["views"] < 60_000
        assert src["published"] >= "2024-02-01" and hit.matched_id and hit.title == before[hit.video_id]["title"]
    exact = searcher.search("a man is talking", k=5, filters={"term": {"channel": "cooking"}}, source=["channel"])
    assert exact.hits and {h.source["channel"] for h in exact.hits} == {"cooking"}
    assert searcher.search("a man is talking", k=5, hybrid="union").hits
    with pytest.raises(ValueError, match="filters.term.title: title is a text field"):
        searcher.search("a man", filters={"term": {"title": "a man"}})

    rewritten, _, _ = backfill(client, alias, tiny_model_dir, queue)  # again: the same values, rewritten
    assert (rewritten.indexed, rewritten.updated, rewritten.failed) == (0, n - 1, 1)
    assert {vid: user_part(src) for vid, src in sources(client, index).items()} == {
        vid: user_part(src) for vid, src in before.items()}


def test_missing_finds_and_fills_only_the_documents_added_later(client, user, tiny_model_dir, queue):
    index, alias = user
    create_user_index(client, MSRVTT, index, alias, limit=60)
    attach(client, alias, gi.IndexSpec.from_model_dir(tiny_model_dir))
    first, _, target = backfill(client, alias, tiny_model_dir, queue, missing=True)
    assert first.indexed == 60
    seq_before = {h["_id"]: h["_seq_no"] for h in client.search(index=index, body={
        "size": 100, "seq_no_primary_term": True, "_source": False})["hits"]["hits"]}
    add_documents(client, index, MSRVTT, range(60, 85))  # the user's clients add videos, without grdr fields
    batches = plan_documents(client, target, missing=True, batch_size=64)
    later = {vid for src, _ in batches for vid in src.ids}
    assert len(later) == 25 and not later & set(seq_before)
    summary, _, _ = backfill(client, alias, tiny_model_dir, queue, missing=True)
    assert (summary.indexed, summary.updated, summary.failed) == (25, 0, 0)
    seq_after = {h["_id"]: h["_seq_no"] for h in client.search(index=index, body={
        "size": 100, "seq_no_primary_term": True, "_source": False})["hits"]["hits"]}
    assert {vid: seq_after[vid] for vid in seq_before} == seq_before  # the others were not written again
    assert plan_documents(client, target, missing=True, batch_size=64) == []


def test_backfill_from_a_dataset_folder_fills_the_documents_it_names(client, user, tiny_model_dir, queue):
    index, alias = user
    create_user_index(client, MSRVTT, index, alias, limit=60)
    before = sources(client, index)
    attach(client, alias, gi.IndexSpec.from_model_dir(tiny_model_dir))
    target = prepare_backfill(client, alias, tiny_model_dir)
    summary, _ = wait(enqueue_backfill(make_plan(dataset=MSRVTT, batch_size=500).batches, target, queue=queue))
    assert (summary.indexed, summary.updated, summary.failed) == (60, 0, 940)  # the catalog's other videos
    assert all(e.reason.startswith("no document with _id") for e in summary.errors)
    after = sources(client, index)
    assert len(after) == 60 and all(len(src["grdr_vec"]) == TINY_SERVING["rerank_dim"] for src in after.values())
    assert {v: user_part(s) for v, s in after.items()} == {v: user_part(s) for v, s in before.items()}


def test_conflicts_are_refused_by_name_and_change_nothing(client, user, tiny_model_dir):
    index, _ = user
    spec = gi.IndexSpec.from_model_dir(tiny_model_dir)
    client.indices.create(index=index, body={"mappings": {"_meta": {"owner": "x"}, "properties": {
        "title": {"type": "text"}, "grdr_vec": {"type": "float"}}}})
    mapping = client.indices.get_mapping(index=index)
    with pytest.raises(AttachRefused, match="'grdr_vec' as float; grdr needs knn_vector\\[32\\]"):
        attach(client, index, spec)
    assert client.indices.get_mapping(index=index) == mapping
    partial = f"{index}-partial"
    client.indices.create(index=partial, body={"mappings": {"_source": {"excludes": ["emb"]}, "properties": {
        "emb": {"type": "knn_vector", "dimension": 4}}}})
    with pytest.raises(AttachRefused, match="_source.excludes: emb"):
        attach(client, partial, spec)
    with pytest.raises(LookupError, match="no index or alias named"):
        attach(client, f"{index}-nothing", spec)


def test_grdr_ingest_refuses_the_users_index_and_detach_stops_serving_it(client, user, tiny_model_dir, queue):
    index, alias = user
    create_user_index(client, MSRVTT, index, alias, limit=40)
    with pytest.raises(ValueError, match="an index grdr did not create"):
        prepare_target(client, alias, tiny_model_dir)  # a full write would replace the user's documents
    attach(client, alias, gi.IndexSpec.from_model_dir(tiny_model_dir))
    with pytest.raises(ValueError, match="grdr backfill"):
        prepare_target(client, alias, tiny_model_dir, reindex=True)
    backfill(client, alias, tiny_model_dir, queue)
    before = sources(client, index)
    assert RegistryReader(alias).poll(client)

    report = detach(client, alias)
    assert report.detached == [index] and report.fields_kept[index] == ["grdr_ids", "grdr_prefixes", "grdr_vec"]
    with pytest.raises(gi.FingerprintMismatch, match="was detached"):
        Searcher(tiny_model_dir, alias, client=client).connect()
    with pytest.raises(gi.FingerprintMismatch, match="was detached"):
        prepare_backfill(client, alias, tiny_model_dir, features_field=VECTOR_FIELD)
    client.indices.refresh(index=REGISTRY_INDEX)
    assert client.count(index=REGISTRY_INDEX, body={"query": {"term": {"alias": alias}}})["count"] == 0
    assert sources(client, index) == before  # the fields and values stay: a mapping cannot drop them
    meta = client.indices.get_mapping(index=index)[index]["mappings"]["_meta"]
    assert meta["owner"] == "video-platform" and meta["grdr"]["detached"] is True

    attach(client, alias, gi.IndexSpec.from_model_dir(tiny_model_dir))  # the same model: its values serve again
    assert Searcher(tiny_model_dir, alias, client=client, beam_size=8).connect().search("a dog", k=3).hits


def test_the_component_template_composes_into_the_users_index_template(client, user, tiny_model_dir):
    index, _ = user
    spec = gi.IndexSpec.from_model_dir(tiny_model_dir)
    name = f"{index}-grdr"
    try:
        gi.put_component_template(client, spec, name)
        client.indices.put_index_template(name=name, body={
            "index_patterns": [f"{index}-*"], "composed_of": [name],
            "template": {"mappings": {"_meta": {"owner": "video-platform"},
                                      "properties": {"title": {"type": "text"}}}}})
        client.indices.create(index=f"{index}-2025")
        mappings = client.indices.get_mapping(index=f"{index}-2025")[f"{index}-2025"]["mappings"]
        assert mappings["_meta"]["owner"] == "video-platform"
        assert gi.meta_of(mappings).mode == "attached" and gi.meta_of(mappings).fingerprint == spec.fingerprint
        assert mappings["properties"]["grdr_vec"]["dimension"] == TINY_SERVING["rerank_dim"]
        report = attach(client, f"{index}-2025", spec)  # only the registry key is recorded
        assert report.added == {} and report.changed == [f"{index}-2025"]
    finally:
        client.indices.delete_index_template(name=name, ignore=[404])
        client.cluster.delete_component_template(name=name, ignore=[404])


def test_refit_of_a_concrete_index_fills_new_fields_then_switches(client, user, tiny_model_dir, other_model_dir,
                                                                  queue):
    index, _ = user
    create_user_index(client, MSRVTT, index, limit=50)
    attach(client, index, gi.IndexSpec.from_model_dir(tiny_model_dir))
    backfill(client, index, tiny_model_dir, queue)
    before = sources(client, index)
    refit = plan_refit(client, index, other_model_dir)
    assert refit.kind == "index" and any("add new fields grdr_ids_" in line for line in describe(refit))
    start_refit(client, refit)
    old = Searcher(tiny_model_dir, index, client=client, beam_size=8).connect()  # still serving meanwhile
    summary, extra, _ = backfill(client, index, other_model_dir, queue, refit=refit)
    assert summary.indexed == 50 and extra["swapped"] is True
    meta = gi.meta_of(client.indices.get_mapping(index=index)[index]["mappings"])
    assert meta.fingerprint == ModelRuntime(other_model_dir).fingerprint and meta.fields == refit.fields
    assert old.search("a dog", k=3).hits  # a running process keeps its old fields until restarted
    with pytest.raises(gi.FingerprintMismatch):
        Searcher(tiny_model_dir, index, client=client).connect()
    res = Searcher(other_model_dir, index, client=client, beam_size=8).connect().search("a dog", k=5)
    assert res.hits and all(h.matched_id for h in res.hits)
    after = sources(client, index)
    assert {v: user_part(s, refit.fields) for v, s in after.items()} == {v: user_part(s) for v, s in before.items()}


def test_refit_behind_an_alias_copies_backfills_and_moves_the_alias(client, user, tiny_model_dir, other_model_dir,
                                                                    queue):
    index, alias = user
    create_user_index(client, MSRVTT, index, alias, limit=50)
    client.indices.update_aliases(body={"actions": [{"add": {"index": index, "alias": alias, "is_write_index": True}}]})
    attach(client, alias, gi.IndexSpec.from_model_dir(tiny_model_dir))
    backfill(client, alias, tiny_model_dir, queue)
    before = sources(client, index)
    refit = plan_refit(client, alias, other_model_dir)
    assert refit.kind == "alias" and refit.target_index.startswith(f"{index}-grdr-")
    start_refit(client, refit)
    assert client.count(index=refit.target_index)["count"] == 50
    assert gi.resolve(client, alias).indices == (index,)  # clients still read the old index
    summary, extra, _ = backfill(client, alias, other_model_dir, queue, refit=refit, target_name=refit.target_index)
    assert summary.indexed == 50 and extra["swapped"] is True and extra["swapped_from"] == index
    assert gi.resolve(client, alias).indices == (refit.target_index,)
    moved = client.indices.get_alias(index=refit.target_index, name=alias)[refit.target_index]["aliases"][alias]
    assert moved.get("is_write_index") is True  # the alias keeps its properties
    copy = sources(client, refit.target_index)
    assert {v: user_part(s) for v, s in copy.items()} == {v: user_part(s) for v, s in before.items()}
    res = Searcher(other_model_dir, alias, client=client, beam_size=8).connect().search("a dog", k=5)
    assert res.hits


def readme_quickstart() -> list[list[str]]:
    """The commands of the README's "I already have a video index" block, as argument lists."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text.split("## I already have a video index", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_the_readme_quickstart_works_end_to_end(client, user, tiny_model_dir, queue):
    index, alias = user
    env = {**os.environ, "GRDR_INGEST_QUEUE": queue}
    names = {"DATA": str(MSRVTT), "M": str(tiny_model_dir), "my-videos-v1": index, "my-videos": alias}
    commands = readme_quickstart()
    assert [c[:3] for c in commands] == [["python", "-m", "bench.user_index"], ["grdr", "attach", "--index"],
                                         ["grdr", "backfill", "--index"], ["grdr", "search", "a man is cooking"]]
    outputs = []
    for command in commands:
        argv = [names.get(a, a) for a in command]
        argv = [sys.executable, "-m", "bench.user_index", *argv[3:]] if argv[0] == "python" else \
            [sys.executable, "-m", "cli.main", *argv[1:], *(["--json"] if argv[1] in ("backfill", "search") else [])]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, (argv, done.stderr)
        outputs.append(done.stdout.strip().splitlines()[-1])
    assert client.count(index=alias)["count"] == 1000
    summary = json.loads(outputs[2])
    assert set(summary) == INGEST_JSON_KEYS and (summary["indexed"], summary["failed"]) == (1000, 0)
    hits = json.loads(outputs[3])["hits"]
    assert hits and all(h["matched_id"] and h["source"]["published"] for h in hits)
    assert {client.get(index=alias, id=h["video_id"])["_source"]["channel"] for h in hits} == {"news"}


def test_the_cli_refuses_what_would_harm_the_users_index(user, tiny_model_dir, queue, client):
    index, alias = user
    create_user_index(client, MSRVTT, index, alias, limit=20)
    env = {**os.environ, "GRDR_INGEST_QUEUE": queue}

    def grdr(*args):
        out = subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env,
                             timeout=300)
        return out.returncode, out.stderr

    model = str(tiny_model_dir)
    rc, err = grdr("backfill", "--index", alias, "--model", model, "--dataset", str(MSRVTT), "--missing")
    assert rc == 1 and "--missing finds the documents without grdr's fields" in err
    rc, err = grdr("backfill", "--index", alias, "--model", model, "--features-field", VECTOR_FIELD)
    assert rc == 1 and "has no grdr fields; add them with `grdr attach" in err
    rc, err = grdr("ingest", "--dataset", str(MSRVTT), "--model", model, "--index", alias)
    assert rc == 1 and "an index grdr did not create" in err
    rc, err = grdr("attach", "--index", alias, "--model", model)
    assert rc == 0, err
    rc, err = grdr("backfill", "--index", alias, "--model", model, "--features-field", "title")
    assert rc == 1 and "title is a text field" in err and "not a knn_vector" in err
    rc, err = grdr("backfill", "--index", alias, "--model", model, "--features-field", VECTOR_FIELD, "--reindex")
    assert rc == 1 and "already holds this model's IDs" in err
