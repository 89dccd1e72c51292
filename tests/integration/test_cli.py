"""`grdr` as a user runs it, against the real node, Redis and a real Celery worker: results on stdout, errors
that name what to fix, exit codes that say what happened, and no run that waits for nobody."""
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
import redis

from grdr_plugin import index as gi
from ingest.submit import enqueue, make_plan, wait
from ingest.target import prepare_target
from tests.conftest import shared_dataset

MSRVTT = shared_dataset("msrvtt")
VIDEOS = 100  # msrvtt's first 100 lines: 80 seen, 20 unseen


def grdr(*args, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env})


def flat(text: str) -> str:
    return " ".join(text.split())


def last_json(out: subprocess.CompletedProcess) -> dict:
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def catalog(client, tiny_model_dir, queue):
    """msrvtt's first 100 videos ingested by the module's worker; its alias (dropped afterwards)."""
    alias = f"test-cli-{uuid.uuid4().hex[:8]}"
    plan = make_plan(dataset=MSRVTT, batch_size=VIDEOS)
    plan.batches = plan.batches[:1]
    summary, _ = wait(enqueue(plan, prepare_target(client, alias, tiny_model_dir), queue=queue))
    assert (summary.indexed, summary.failed) == (VIDEOS, 0)
    yield alias
    gi.drop_index(client, alias)


def test_ingest_wait_without_a_worker_fails_fast_and_queues_nothing(client, alias, tiny_model_dir, settings):
    nobody = f"grdr-nobody-{uuid.uuid4().hex[:8]}"  # a queue no worker consumes
    t0 = time.monotonic()
    out = grdr("ingest", "--dataset", MSRVTT, "--split", "unseen", "--model", tiny_model_dir, "--index", alias,
               "--wait", "--json", timeout=60, GRDR_INGEST_QUEUE=nobody)
    assert out.returncode == 1 and time.monotonic() - t0 < 30
    said = flat(out.stderr)
    assert f"no Celery worker consumes the ingest queue '{nobody}'" in said and "nothing was queued" in said
    assert f"celery -A ingest worker -Q {nobody} -l info" in said
    assert redis.Redis.from_url(settings.broker_url).llen(nobody) == 0
    assert gi.alias_target(client, alias) is None and gi.concrete_indices(client, alias) == []  # nothing created


def test_index_create_twice_changes_nothing_and_another_models_index_is_refused(client, alias, tiny_model_dir):
    first = grdr("index", "create", "--model", tiny_model_dir, "--index", alias)
    assert first.returncode == 0 and f"created {alias}-v000001" in first.stdout
    again = grdr("index", "create", "--model", tiny_model_dir, "--index", alias)
    assert again.returncode == 0 and "nothing to create" in again.stdout
    assert gi.concrete_indices(client, alias) == [f"{alias}-v000001"]  # no orphan version
    other = f"{alias}-other"
    gi.create_index(client, other, gi.IndexSpec(rerank_dim=32, fingerprint="another-model-0001"))
    try:
        refused = grdr("index", "create", "--model", tiny_model_dir, "--index", other)
        assert refused.returncode == 1 and "holds semantic IDs of model another-mode" in flat(refused.stderr)
        assert gi.concrete_indices(client, other) == [f"{other}-v000001"]
    finally:
        gi.drop_index(client, other)


def test_index_list_and_info_print_everything_on_stdout(client, catalog):
    index = gi.alias_target(client, catalog)
    listed = grdr("index", "list")
    assert listed.returncode == 0 and any(f" {catalog} " in line and f" {index} " in line
                                          for line in listed.stdout.splitlines())
    entry = next(c for c in last_json(grdr("index", "list", "--json"))["catalogs"] if c["alias"] == catalog)
    assert (entry["index"], entry["docs"], entry["versions"], entry["mode"]) == (index, VIDEOS, [index], "catalog")

    info = grdr("index", "info", catalog)
    fingerprint = gi.fingerprint_of(client.indices.get_mapping(index=index))
    assert info.returncode == 0 and info.stderr == "" and fingerprint in info.stdout  # whole, not cut
    data = last_json(grdr("index", "info", catalog, "--json"))
    assert (data["docs"], data["shards"], data["replicas"], data["health"]) == (VIDEOS, 1, 0, "green")
    assert data["sorted_by"] == "grdr_ids" and "smallest of grdr_ids" in info.stdout
    hits = client.search(index=catalog, body={"size": VIDEOS})["hits"]["hits"]
    assert data["distinct_ids"] == len({i for h in hits for i in h["_source"]["grdr_ids"]})
    for line in ("distinct IDs", "shards / replicas", "health", "scorer"):
        assert line in info.stdout
    assert data["meta"]["scorer"] == "knn_exact" and "knn_exact" in info.stdout


def test_search_prints_hits_on_stdout_filters_and_labels_rrf_scores(client, catalog, tiny_model_dir):
    found = grdr("search", "a man is cooking", "--model", tiny_model_dir, "--index", catalog, "--k", "5")
    assert found.returncode == 0 and "knn score" in found.stdout and "loads the model" in found.stderr
    result = last_json(grdr("search", "a man is cooking", "--model", tiny_model_dir, "--index", catalog, "-k", "20",
                            "--filter", "split=unseen", "--json"))
    assert result["score_kind"] == "knn_score" and result["recalled_ids"] > 0 and result["pool_size"] > 0
    assert result["hits"] and all(client.get(index=catalog, id=h["video_id"])["_source"]["split"] == "unseen"
                                  for h in result["hits"])
    rrf = grdr("search", "a man is cooking", "--model", tiny_model_dir, "--index", catalog, "--hybrid", "rrf")
    assert rrf.returncode == 0 and "rrf score" in rrf.stdout
    bad = grdr("search", "a man is cooking", "--model", tiny_model_dir, "--index", catalog, "--filter", "nope=1")
    assert bad.returncode == 1 and "filters.fields.nope: not a keyword field" in flat(bad.stderr)


def test_doctor_checks_the_catalog_the_registry_and_the_worker(catalog, queue):
    report = last_json(grdr("doctor", "--index", catalog, "--json", GRDR_INGEST_QUEUE=queue))
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] and checks["OpenSearch"]["status"] == "ok"
    assert checks["k-NN"]["status"] == "ok" and checks["k-NN"]["detail"].startswith("opensearch-knn ")
    index_check = checks[f"index {catalog}"]
    assert index_check["status"] == "ok" and f"{VIDEOS} documents" in index_check["detail"]
    assert checks["ID registry"]["status"] == "ok" and f"published for {catalog}" in checks["ID registry"]["detail"]
    assert checks["worker"]["status"] == "ok" and queue in checks["worker"]["detail"]


def test_status_with_https_against_the_plain_local_node_says_to_use_http(settings):
    url = settings.opensearch_url.replace("http://", "https://")
    out = grdr("cluster", "status", GRDR_OPENSEARCH_URL=url)
    assert out.returncode == 1
    said = flat(out.stdout)
    assert f"OpenSearch at {url} answers plain HTTP, not TLS" in said
    assert f"set GRDR_OPENSEARCH_URL={settings.opensearch_url}" in said


def test_index_drop_yes_drops_without_asking(client, tiny_model_dir, alias):
    assert grdr("index", "create", "--model", tiny_model_dir, "--index", alias).returncode == 0
    out = grdr("index", "drop", alias, "--yes")
    assert out.returncode == 0 and f"dropped {alias}-v000001" in out.stdout
    assert gi.alias_target(client, alias) is None
