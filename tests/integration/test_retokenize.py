"""`grdr retokenize` end to end: a catalog ingested by a real Celery worker, retokenized to a larger codebook, then
moved to the new IDs by `grdr ingest --reindex` while the old model keeps answering searches.

How a serving process moves to the new model: a Searcher checks the index's fingerprint in `connect()`
(query.searcher, grdr_plugin.index.served_meta) and connects again when hits come from an index the alias did
not point at then, so a running `grdr serve --model OLD_DIR` answers from the old index until the swap and is
refused from then on (the fingerprint error naming both models; HTTP 503), never decoding OLD's IDs against the
new index. Restart it with `grdr serve --model NEW_DIR` once `grdr ingest --reindex --wait` reports the swap.
"""
import json
import os
import shlex
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from grdr_plugin import index as gi
from grdr_plugin.data import load_dataset
from grdr_plugin.runtime import ModelRuntime
from ingest.docs import semantic_ids
from ingest.features import to_model_inputs
from ingest.submit import enqueue, make_plan, wait
from ingest.target import prepare_target
from query.searcher import Searcher
from tests.conftest import TINY_SERVING, shared_dataset

MSRVTT = shared_dataset("msrvtt")
NEW_C = 2 * TINY_SERVING["codebook_size"]
BEAM, POOL = 8, 40
SAMPLED = 25  # videos whose new IDs are checked one by one
QUERIES = ["a man is cooking in a kitchen", "a cat plays with a ball", "people dancing on a stage"]


def grdr(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


class Searching(threading.Thread):
    """Searches the alias with the OLD model's Searcher until stopped; records which index the alias pointed at
    before each search and what the search gave."""

    def __init__(self, searcher: Searcher, client, alias: str):
        super().__init__(daemon=True)
        self.searcher, self.client, self.alias = searcher, client, alias
        self.stop = threading.Event()
        self.log: list[tuple[str, object]] = []  # (index before the search, hits or the exception)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            serving = gi.alias_target(self.client, self.alias)
            try:
                outcome: object = self.searcher.search(QUERIES[i % len(QUERIES)], k=10).hits
            except Exception as exc:  # noqa: BLE001 - recorded, asserted on below
                outcome = exc
            self.log.append((serving, outcome))
            i += 1


def test_retokenize_then_reindex_serves_the_new_ids_while_the_old_model_answers(client, ingest_alias, queue,
                                                                                 tiny_model_dir, tmp_path):
    old_dir, new_dir = tiny_model_dir, tmp_path / "retokenized"
    target = prepare_target(client, ingest_alias, old_dir)
    summary, _ = wait(enqueue(make_plan(dataset=MSRVTT, batch_size=500), target, queue=queue))
    assert (summary.indexed, summary.failed) == (1000, 0)
    old_index = gi.alias_target(client, ingest_alias)

    out = grdr("retokenize", "--model", str(old_dir), "--dataset", str(MSRVTT), "--out", str(new_dir),
               "--codebook-size", str(NEW_C), "--index", ingest_alias, "--json")
    assert out.returncode == 0, out.stderr
    retok = json.loads(out.stdout.strip().splitlines()[-1])
    old_fp, new_fp = ModelRuntime(old_dir).fingerprint, ModelRuntime(new_dir).fingerprint
    assert retok["retokenized_from"]["fingerprint"] == old_fp != new_fp == retok["fingerprint"]
    assert retok["codebook_size"] == {"old": TINY_SERVING["codebook_size"], "new": NEW_C}
    assert f"C {TINY_SERVING['codebook_size']} -> {NEW_C}" in out.stdout
    next_line = next(line for line in out.stdout.splitlines() if line.startswith("next: "))
    reindex = shlex.split(next_line.removeprefix("next: ").split(" (then")[0])
    assert reindex == ["grdr", "ingest", "--dataset", str(MSRVTT), "--model", str(new_dir), "--index", ingest_alias,
                       "--reindex", "--wait"]

    old_searcher = Searcher(old_dir, ingest_alias, client=client, beam_size=BEAM, max_pool=POOL).connect()
    searching = Searching(old_searcher, client, ingest_alias)
    searching.start()
    while len(searching.log) < 3:  # the old model is answering before the reindex starts
        time.sleep(0.05)
    done = grdr(*reindex[1:], env={"GRDR_INGEST_QUEUE": queue})  # the command retokenize printed, as printed
    assert done.returncode == 0, done.stderr
    time.sleep(0.5)  # a few searches after the swap
    searching.stop.set()
    searching.join(timeout=60)

    new_index = gi.alias_target(client, ingest_alias)
    assert new_index != old_index and client.count(index=ingest_alias)["count"] == 1000
    before_swap = [outcome for serving, outcome in searching.log if serving == old_index]
    assert len(before_swap) >= 3 and any(serving == new_index for serving, _ in searching.log)
    for outcome in before_swap[:-1]:
        assert isinstance(outcome, list) and len(outcome) == 10, outcome  # every search answered until the swap
    # the last one may have met the swap; from the swap on the old model is refused, never served the new IDs
    straddling = before_swap[-1]
    assert (isinstance(straddling, list) and len(straddling) == 10) or isinstance(straddling, gi.FingerprintMismatch)
    after_swap = [outcome for serving, outcome in searching.log if serving == new_index]
    assert after_swap and all(isinstance(o, gi.FingerprintMismatch) for o in after_swap), after_swap

    # the new model serves the alias: each sampled video is reached by its own new IDs
    new_searcher = Searcher(new_dir, ingest_alias, client=client, beam_size=BEAM, max_pool=POOL).connect()
    assert all(len(r.hits) == 10 for r in new_searcher.search_many(QUERIES, k=10))
    ds = load_dataset(MSRVTT)
    rows = np.random.default_rng(0).choice(ds.n_videos, SAMPLED, replace=False)
    frames, pooled = to_model_inputs(ds.features[rows], ds.frames[rows], TINY_SERVING["frames"])
    codes, _ = ModelRuntime(new_dir).encode_videos(frames, pooled)
    assert codes.max() < NEW_C
    snapshot = new_searcher.store.snapshot
    for row, ids in zip(rows, semantic_ids(codes)):
        video_id = ds.video_ids[row]
        assert client.get(index=ingest_alias, id=video_id)["_source"]["grdr_ids"] == ids
        for sid in ids:
            assert snapshot.video_count(sid) >= 1
            found = client.search(index=ingest_alias, body={"size": 1000, "_source": False,
                                                            "query": {"term": {"grdr_ids": sid}}})["hits"]["hits"]
            assert video_id in {h["_id"] for h in found}

    # a process that (re)connects with the old model is refused, naming both models and the fix
    with pytest.raises(gi.FingerprintMismatch) as refused:
        Searcher(old_dir, ingest_alias, client=client).connect()
    assert new_fp[:12] in str(refused.value) and old_fp[:12] in str(refused.value)
