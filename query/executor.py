"""The round trips of a planned batch (query.planner) to OpenSearch.

* `run_rounds`: one `_msearch` with every query's GRDR request (and its keyword request, hybrid),
  then a second one with only the queries the planner asks again (widened: a pool smaller than k).
* `NativeHybrid`: hybrid="rrf" as neural-search's `hybrid` query, while OpenSearch accepts it.

A refused query is raised as `QueryRefused` with OpenSearch's reason; nothing here plans or fuses.

Every `_msearch` is made whole before it is answered (`send`): searches are reads, so asking again
is safe.  A connection error or timeout, a 502/503/504, an answer of a server-side error (5xx) or
a partial one (`_shards.failed` > 0: a pool that silently lost the hits of a shard) is asked again,
after a pause, on the client's next node, for the failed queries only; what is still lost after the
last try is raised (`OpenSearchUnavailable`, or the connection error).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError
from opensearchpy.exceptions import RequestError, SSLError, TransportError

from query.planner import SearchPlan, TrieCounts, ask_again, first_round, grdr_body
from query.results import recalled_total

log = logging.getLogger(__name__)

NEURAL_SEARCH_PLUGIN = "opensearch-neural-search"
# Pauses before the second and third try of a search whose answer a node failure cost: a new try reaches live
# copies at once, and the pauses cover the ~0.5 s a 3-node cluster takes to drop a SIGKILLed node and promote its
# replicas (~2 s when it was the cluster manager: docs/RELIABILITY.md#node-loss); a client waits at most 1.5 s more.
RETRY_PAUSES_S = (0.5, 1.0)
# A proxy or node that could not answer for the cluster (bad gateway, unavailable, gateway timeout): another may.
RETRY_STATUSES = frozenset({502, 503, 504})

Response = dict[str, Any]


class QueryRefused(RuntimeError):
    """OpenSearch answered a query of the batch with an error."""


class OpenSearchUnavailable(TransportError):
    """OpenSearch could not answer a search in full, also after the retries (e.g. a shard with no live copy)."""


def _lines(index: str, bodies: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """An `_msearch` body: a header naming the index before each request."""
    return [line for body in bodies for line in ({"index": index}, body)]


def retryable(exc: TransportError) -> bool:
    """Whether another node may answer what raised `exc`: no answer at all (refused, reset, timed out; a TLS
    failure is no such thing) or a 502/503/504."""
    if isinstance(exc, OpenSearchConnectionError):
        return not isinstance(exc, SSLError)
    return exc.status_code in RETRY_STATUSES


def lost_reason(response: Response) -> Optional[str]:
    """Why one `_msearch` answer is not whole, so that it is asked again: a server-side error (5xx) or failed
    shards; None for a whole answer or the refusal of the query itself (a 4xx, or no status: asked again,
    refused again)."""
    if "error" in response:
        return _reason(response["error"]) if response.get("status", 400) >= 500 else None
    shards = response.get("_shards") or {}
    if not shards.get("failed"):
        return None
    first = (shards.get("failures") or [{}])[0]
    return f"{shards['failed']} of {shards.get('total', '?')} shards failed: {_reason(first.get('reason'))}"


def _reason(error: Any) -> str:
    return f"{error.get('type')}: {error.get('reason')}" if isinstance(error, dict) else str(error)


def send(client, index: str, bodies: Sequence[dict[str, Any]]) -> list[Response]:
    """One `_msearch` made whole: a response per body, in order.  The failed part is sent again after each of
    RETRY_PAUSES_S (module doc); refusals (4xx) come back as answers, for the caller to judge."""
    answers: list[Response] = [{} for _ in bodies]
    todo = list(range(len(bodies)))
    failure: Optional[TransportError] = None
    reason = ""
    for attempt, pause in enumerate((0.0, *RETRY_PAUSES_S)):
        if attempt:
            log.warning("asking OpenSearch again for %d of %d searches in %.1f s: %s", len(todo), len(bodies),
                        pause, reason)
            time.sleep(pause)
        try:
            got = client.msearch(body=_lines(index, [bodies[i] for i in todo]))["responses"]
        except TransportError as exc:
            if not retryable(exc):
                raise
            failure, reason = exc, f"{type(exc).__name__}: {exc}"
            continue
        failure = None
        for i, response in zip(todo, got):
            answers[i] = response
        lost = [(i, why) for i in todo if (why := lost_reason(answers[i])) is not None]
        if not lost:
            return answers
        todo, reason = [i for i, _ in lost], lost[0][1]
    if isinstance(failure, OpenSearchConnectionError):
        raise failure  # nothing answered: its handlers name the URL and what to check
    raise OpenSearchUnavailable(503, f"OpenSearch could not answer {len(todo)} of {len(bodies)} searches in full "
                                     f"after {1 + len(RETRY_PAUSES_S)} tries: {reason}") from failure


def msearch(client, index: str, bodies: Sequence[dict[str, Any]]) -> list[Response]:
    """One `_msearch` round trip (`send`): a response per body, in order."""
    responses = send(client, index, bodies)
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
    prefixes, again = ask_again(plan, [recalled_total(r) for r in grdr], trie)
    if again:
        bodies = [grdr_body(plan, plan.queries[i], prefixes[i]) for i in again]
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
            responses = send(client, index, bodies)
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
