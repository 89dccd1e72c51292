"""The round trips of a planned batch (query.planner) to OpenSearch.

* `run_rounds`: one `_msearch` with every query's GRDR request (and its keyword request, hybrid),
  then a second one with only the queries the planner asks again (widening, stale counts).
* `NativeHybrid`: hybrid="rrf" as neural-search's `hybrid` query, while OpenSearch accepts it.

A refused query is raised as `QueryRefused` with OpenSearch's reason; nothing here plans or fuses.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from opensearchpy.exceptions import RequestError

from query.planner import SearchPlan, TrieCounts, ask_again, first_round, grdr_body
from query.results import pool_size, recalled_total

log = logging.getLogger(__name__)

NEURAL_SEARCH_PLUGIN = "opensearch-neural-search"

Response = dict[str, Any]


class QueryRefused(RuntimeError):
    """OpenSearch answered a query of the batch with an error."""


def _lines(index: str, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """An `_msearch` body: a header naming the index before each request."""
    return [line for body in bodies for line in ({"index": index}, body)]


def msearch(client, index: str, bodies: Sequence[dict[str, Any]]) -> list[Response]:
    """One `_msearch` round trip: a response per body, in order."""
    responses = client.msearch(body=_lines(index, bodies))["responses"]
    for r in responses:
        if "error" in r:
            raise QueryRefused(f"OpenSearch refused the query: {r['error']}")
    return responses


@dataclass
class Answers:
    """Per query of a plan: its GRDR response (the second round's where it was asked again), its
    keyword response (None unless hybrid), and the prefixes its recall was widened by."""

    grdr: list[Response]
    keyword: list[Optional[Response]]
    prefixes: list[list[str]]


def run_rounds(client, index: str, plan: SearchPlan, trie: TrieCounts) -> Answers:
    """The first round for every query, then the second for those the planner asks again."""
    responses = msearch(client, index, first_round(plan))
    if plan.hybrid == "off":
        grdr, keyword = responses, [None] * len(responses)
    else:
        grdr, keyword = responses[0::2], responses[1::2]
    prefixes, again = ask_again(plan, [pool_size(r, plan.reranked) for r in grdr], [recalled_total(r) for r in grdr],
                                trie)
    if again:
        bodies = [grdr_body(plan, plan.queries[i], prefixes[i], pool_order=True) for i in again]
        for i, response in zip(again, msearch(client, index, bodies)):
            grdr[i] = response
    return Answers(grdr=grdr, keyword=keyword, prefixes=prefixes)


def neural_search_present(client) -> bool:
    """Whether every node lists the neural-search plugin (`_cat/plugins`): its `hybrid` query
    runs on whichever node holds the shard.  (A node with no plugin at all has no row; grdr
    needs k-NN on every node, so there is none.)"""
    rows = client.cat.plugins(format="json")
    nodes = {r.get("name") for r in rows}
    with_plugin = {r.get("name") for r in rows if r.get("component") == NEURAL_SEARCH_PLUGIN}
    return bool(with_plugin) and with_plugin == nodes


class NativeHybrid:
    """Whether hybrid="rrf" is fused inside OpenSearch; switched off for good (and logged once)
    the first time OpenSearch refuses the `hybrid` query.  Shared by every thread of a Searcher."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._lock = threading.Lock()

    @classmethod
    def detect(cls, client) -> "NativeHybrid":
        """On when every node has neural-search (a role that cannot list plugins: off)."""
        try:
            return cls(neural_search_present(client))
        except Exception as exc:  # e.g. a role without cluster:monitor/nodes/info: fuse client side
            log.info("cannot list the cluster's plugins (%s); hybrid rrf fuses client side", exc)
            return cls(False)

    @property
    def enabled(self) -> bool:
        return self._enabled

    def run(self, client, index: str, bodies: Sequence[dict[str, Any]]) -> Optional[list[Response]]:
        """The `hybrid` requests' responses, or None when OpenSearch refuses them (the caller
        then fuses the same batch client side)."""
        try:  # an unknown `hybrid` query fails the whole _msearch (400); other errors come per response
            responses = client.msearch(body=_lines(index, bodies))["responses"]
        except RequestError as exc:
            responses = [{"error": exc.info or exc.error}]
        refused = next((r["error"] for r in responses if "error" in r), None)
        if refused is None:
            return responses
        self._switch_off(refused)
        return None

    def _switch_off(self, reason: Any) -> None:
        with self._lock:
            was_on, self._enabled = self._enabled, False
        if was_on:
            log.warning("OpenSearch refused the hybrid query (%s); hybrid rrf fuses client side from now on", reason)
