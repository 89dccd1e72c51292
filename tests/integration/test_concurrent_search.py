"""One Searcher shared by 8 threads while ingest publishes new IDs (real node, worker-ingested index).

Every search reads one trie snapshot throughout while refreshes (and folds) publish the next:
no error in any thread, well-formed answers meanwhile, and once the IDs have settled, 8 threads
get exactly what one thread gets.
"""
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from grdr_plugin import id_registry
from ingest.submit import enqueue, make_plan, wait
from ingest.target import prepare_target
from query.searcher import Searcher
from query.trie_store import TrieStore
from tests.conftest import shared_dataset

THREADS, SEARCHES_EACH, K = 8, 12, 20
TEXTS = ["a man is cooking in a kitchen", "a cat plays with a ball", "news anchor talks about politics",
         "two dogs run on the beach", "people talking", "a woman sings on stage", "a car drives fast",
         "kids play football"]
MODES = ("off", "union", "rrf")


def well_formed(result) -> bool:
    ids = [h.video_id for h in result.hits]
    scores = [h.score for h in result.hits]
    return len(ids) == len(set(ids)) <= K and scores == sorted(scores, reverse=True)


def test_threads_share_a_searcher_while_new_ids_are_published(client, ingest_alias, tiny_model_dir, queue,
                                                              monkeypatch):
    plan = make_plan(dataset=shared_dataset("msrvtt"), batch_size=500, split="unseen")
    summary, _ = wait(enqueue(plan, prepare_target(client, ingest_alias, tiny_model_dir), queue=queue))
    assert summary.indexed == 200 and summary.failed == 0
    builds = []
    real_build = TrieStore.build

    def counted_build(store: TrieStore) -> TrieStore:
        builds.append(store)
        return real_build(store)

    monkeypatch.setattr(TrieStore, "build", counted_build)
    # beam 1, pool 1: every search widens by prefixes, so it reads the delta's counts while refreshes replace them;
    # poll interval 0: every search polls the registry, so refreshes run while others search
    searcher = Searcher(tiny_model_dir, ingest_alias, client=client, beam_size=1, max_pool=1, poll_interval_s=0.0)
    cfg = searcher.runtime.cfg
    with ThreadPoolExecutor(THREADS) as pool:  # the first searches connect, once
        first = list(pool.map(lambda t: searcher.search(t, k=K), TEXTS))
    assert len(builds) == 1 and all(well_formed(r) for r in first)

    store = searcher.store
    store.fold_at = len(store.snapshot.delta) + 100  # folds (a new base file) happen during the run too
    unused = [f"{a}-{b}-{c}" for a, b, c in itertools.product(range(cfg.codebook_size), repeat=cfg.levels)
              if f"{a}-{b}-{c}" not in store]
    batches = [unused[i:i + 25] for i in range(0, min(len(unused), 300), 25)]
    assert len(batches) >= 4, "the tiny model's ID space should leave IDs to publish"
    stop = threading.Event()

    def publish() -> None:
        for batch in batches:
            id_registry.publish_ids(client, ingest_alias, batch)
            time.sleep(0.05)
        stop.set()

    def search(worker: int) -> list:
        results = []
        for n in range(SEARCHES_EACH):
            text, mode = TEXTS[(worker + n) % len(TEXTS)], MODES[(worker + n) % len(MODES)]
            results.append(searcher.search(text, k=K, hybrid=mode))
        return results

    writer = threading.Thread(target=publish)
    writer.start()
    with ThreadPoolExecutor(THREADS) as pool:
        during = [r for rs in pool.map(search, range(THREADS)) for r in rs]  # re-raises any thread's error
    writer.join()
    assert stop.is_set() and len(during) == THREADS * SEARCHES_EACH
    assert all(well_formed(r) for r in during)

    published = {s for batch in batches for s in batch}
    deadline = time.monotonic() + 5
    while not all(s in store for s in published):
        assert time.monotonic() < deadline, "every published ID must reach the store"
        store.refresh(force=True)
    trie = store.snapshot
    assert len(trie) == len(trie.base) + len(trie.delta) == trie.tables[-1].size  # one consistent view

    alone = [searcher.search(t, k=K, hybrid=m) for t in TEXTS for m in MODES]
    with ThreadPoolExecutor(THREADS) as pool:
        together = list(pool.map(lambda tm: searcher.search(tm[0], k=K, hybrid=tm[1]),
                                 [(t, m) for t in TEXTS for m in MODES]))
    assert [r.hits for r in together] == [r.hits for r in alone]
    assert [r.pool_size for r in together] == [r.pool_size for r in alone]
