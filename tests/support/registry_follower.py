"""A query process's view of the ID registry, in a process of its own: a TrieStore following an alias and polling
the registry as `grdr serve` does, printing each ID the moment it becomes known (tests time ID arrival with it).

    python -m tests.support.registry_follower ALIAS BASE_INDEX --levels 3 --codebook-size 128

OpenSearch from the GRDR_* variables (GRDR_OPENSEARCH_URL may list every node). stdout: `ready` once the base is
built, then `<unix time> <semantic id>` per new ID; stderr: `<unix time> <error>` per failed refresh (the polling
goes on, as a serving process's would at its next search). Runs until killed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time

from grdr_plugin.settings import Settings
from query.trie_store import TrieStore

NEVER_FOLD = sys.maxsize  # the delta keeps every new ID, so its keys are the IDs this process has learnt
TICK_S = 0.05  # how often refresh() is offered; the store itself polls at most every poll_interval_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("alias", help="the registry key IDs are published under")
    ap.add_argument("base_index", help="the index the base trie is built from")
    ap.add_argument("--levels", type=int, required=True)
    ap.add_argument("--codebook-size", type=int, required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        store = TrieStore(Settings().opensearch_client(), a.alias, levels=a.levels, codebook_size=a.codebook_size,
                          index=a.base_index, cache_dir=cache, fold_at=NEVER_FOLD).build()
        print("ready", flush=True)
        known: set[str] = set()
        while True:
            try:
                store.refresh()
            except Exception as exc:  # noqa: BLE001 - reported, then the next poll tries again
                print(f"{time.time():.3f} {exc!r}", file=sys.stderr, flush=True)
            new = set(store.snapshot.delta) - known
            if new:
                now = time.time()
                sys.stdout.write("".join(f"{now:.3f} {sid}\n" for sid in sorted(new)))
                sys.stdout.flush()
                known |= new
            time.sleep(TICK_S)


if __name__ == "__main__":
    main()
