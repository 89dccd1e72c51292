"""Refit an attached index for a new model without moving its clients (`grdr backfill --reindex`).

IDs of one model mean nothing to another, so a new model needs new values in every document, while
searches keep using the old ones until the new ones are complete:

* clients read an **alias**: the alias's index is copied (its mapping, settings and every document,
  without the old grdr fields) into `<index>-grdr-<fingerprint>`, the new model is attached to the copy
  and the copy backfilled; when every batch has succeeded the alias moves to it in one atomic update,
  keeping its filter, routing and write flag. The old index stays, for the user to delete.
* clients read a **concrete index**: a new generation of grdr fields (`grdr_ids_<fingerprint>`, ...)
  is added to the same index and backfilled while searches read the old fields; when every batch has
  succeeded `_meta.grdr` switches to the new fields. The old fields stay (a mapping cannot drop them).

`plan_refit` decides and `describe` says what will happen before anything does; `start_refit` makes the
new index or fields, `finish_refit` (the chord callback of the backfill) switches.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel

from grdr_plugin import id_registry
from grdr_plugin.attach import attach, read_states
from grdr_plugin.index import (
    DEFAULT_FIELDS,
    GENERATION_TAG,
    GrdrFields,
    IndexSpec,
    grdr_meta,
    grdr_properties,
    meta_of,
    resolve,
    validate_user_index,
)

# Settings that describe one index's identity or history, never a copy's.
_NOT_COPIED = ("index.uuid", "index.creation_date", "index.provided_name", "index.version.", "index.resize.",
               "index.routing.allocation.initial_recovery.", "index.blocks.", "index.verified_before_close")
_COPY_SUFFIX = re.compile(r"-grdr-[0-9a-f]{%d}$" % GENERATION_TAG)
COPY_POLL_S = 1.0  # between checks of the copy task: progress moves, the tasks API barely notices
# Removes the old model's fields from each copied document (field names travel as params, never in the source).
STRIP_SCRIPT = "for (def f : params.fields) { ctx._source.remove(f); }"


class Refit(BaseModel):
    kind: Literal["alias", "index"]
    name: str  # what clients read
    source_index: str  # the index the old model's values are in
    target_index: str  # where the new model's go (the copy, or the same index)
    fields: GrdrFields  # the new model's fields there
    old_fields: GrdrFields
    old_fingerprint: str
    old_key: str  # the registry key query processes follow (forgotten at the switch: it lists old IDs)
    publish_as: str  # the registry key the refit's batches publish under until the switch
    spec: IndexSpec
    model_dir: str


def copy_name(index: str, fingerprint: str) -> str:
    """`<index>-grdr-<fingerprint tag>`, from the index's original name (a second refit replaces the tag)."""
    return f"{_COPY_SUFFIX.sub('', index)}-grdr-{fingerprint[:GENERATION_TAG]}"


def plan_refit(client, name: str, model_dir: str | Path) -> Refit:
    """What a refit of `name` for the model in `model_dir` will do; refuses what it cannot do."""
    model_dir = Path(model_dir).resolve()
    spec = IndexSpec.from_model_dir(model_dir)
    resolved = resolve(client, validate_user_index(name))
    if len(resolved.indices) > 1:
        raise ValueError(f"--index: alias {name} points at {len(resolved.indices)} indices; refit each of them "
                         "through its own name")
    index = resolved.indices[0]
    meta = meta_of(client.indices.get_mapping(index=index)[index]["mappings"])
    if meta is None or meta.fingerprint is None or meta.detached or meta.mode != "attached":
        raise ValueError(f"--index: {name} is not attached to a model; attach it with `grdr attach --index {name} "
                         f"--model {model_dir}` and fill it with `grdr backfill`")
    if meta.fingerprint == spec.fingerprint:
        raise ValueError(f"--index: {name} already holds this model's IDs; `grdr backfill --missing` fills the "
                         "documents that lack them")
    tag = spec.fingerprint[:GENERATION_TAG]
    common = dict(name=name, source_index=index, old_fields=meta.fields, old_fingerprint=meta.fingerprint,
                  old_key=meta.registry_key or name, spec=spec, model_dir=str(model_dir))
    if resolved.is_alias:
        target = copy_name(index, spec.fingerprint)
        return Refit(kind="alias", target_index=target, fields=DEFAULT_FIELDS, publish_as=target, **common)
    return Refit(kind="index", target_index=index, fields=GrdrFields.generation(spec.fingerprint),
                 publish_as=f"{index}@{tag}", **common)


def describe(refit: Refit) -> list[str]:
    """What the refit will do, in the order it does it."""
    new, old = refit.spec.fingerprint[:GENERATION_TAG], refit.old_fingerprint[:GENERATION_TAG]
    if refit.kind == "alias":
        return [f"copy {refit.source_index} (mapping, settings, every document without "
                f"{', '.join(refit.old_fields.names())}) into a new index {refit.target_index}",
                f"attach model {new} to {refit.target_index} and fill its grdr fields; searches through "
                f"{refit.name} keep using {refit.source_index} and model {old} meanwhile",
                f"when every batch has succeeded, move alias {refit.name} to {refit.target_index} in one atomic update "
                f"(its filter, routing and write flag kept); {refit.source_index} stays, delete it when satisfied",
                f"documents your clients write through {refit.name} until then reach {refit.source_index} only: pause "
                f"writes meanwhile, or copy them over afterwards (_reindex from {refit.source_index} with op_type "
                f"create, then `grdr backfill --index {refit.name} --missing`)"]
    return [f"add new fields {', '.join(refit.fields.names())} to {refit.source_index} (no reindex; your fields, "
            "settings and aliases untouched)",
            f"fill them with model {new} for every document by partial update; searches keep reading "
            f"{', '.join(refit.old_fields.names())} and model {old} meanwhile",
            f"when every batch has succeeded, switch {refit.source_index}'s _meta.grdr to model {new} and the new "
            "fields; restart query processes then",
            "the old fields and their values stay in the mapping (OpenSearch cannot remove a field)"]


def _copied_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if not k.startswith(_NOT_COPIED)}


def _copied_mappings(mappings: dict[str, Any], drop: GrdrFields) -> dict[str, Any]:
    """The user's mapping without grdr's old fields and record (the copy gets the new model's)."""
    out = {k: v for k, v in mappings.items() if k not in ("_meta", "properties")}
    out["properties"] = {k: v for k, v in (mappings.get("properties") or {}).items() if k not in drop.names()}
    meta = {k: v for k, v in (mappings.get("_meta") or {}).items() if k != "grdr"}
    if meta:
        out["_meta"] = meta
    return out


def start_refit(client, refit: Refit, on_progress: Callable[[int, int], None] = lambda done, total: None) -> None:
    """Make the new index (a copy of the user's documents) or the new fields; nothing clients read changes."""
    if refit.kind == "index":
        state = read_states(client, resolve(client, refit.source_index))[0]
        client.indices.put_mapping(index=refit.source_index, body={
            "properties": grdr_properties(refit.spec, refit.fields, knn_enabled=state.knn_enabled)})
        return
    source = refit.source_index
    if client.indices.exists(index=refit.target_index):
        raise ValueError(f"--index: {refit.target_index} exists already (an earlier refit of {refit.name}); delete "
                         f"it, or let that refit finish, then run this again")
    settings = client.indices.get_settings(index=source, flat_settings=True)[source]["settings"]
    mappings = client.indices.get_mapping(index=source)[source]["mappings"]
    client.indices.create(index=refit.target_index, body={"settings": _copied_settings(settings),
                                                          "mappings": _copied_mappings(mappings, refit.old_fields)})
    attach(client, refit.target_index, refit.spec, registry_key=refit.name)
    task = client.reindex(body={"source": {"index": source},
                                "dest": {"index": refit.target_index},
                                "script": {"lang": "painless", "source": STRIP_SCRIPT,
                                           "params": {"fields": list(refit.old_fields.names())}}},
                          wait_for_completion=False, refresh=True)["task"]
    while True:
        state = client.tasks.get(task_id=task)
        status = state["task"]["status"]
        on_progress(int(status.get("created", 0)) + int(status.get("updated", 0)), int(status.get("total", 0)))
        if state.get("completed"):
            break
        time.sleep(COPY_POLL_S)
    failures = (state.get("response") or {}).get("failures") or []
    if failures or state.get("error"):
        raise RuntimeError(f"copying {source} into {refit.target_index} failed: {(failures or [state['error']])[0]}; "
                           f"{refit.name} still points at {source} (delete {refit.target_index} and try again)")


def finish_refit(client, refit: Refit) -> Optional[str]:
    """Switch what clients read to the new model (the backfill's chord callback); returns what it left."""
    if refit.kind == "alias":
        index = refit.source_index
        props = client.indices.get_alias(index=index, name=refit.name)[index]["aliases"][refit.name]
        client.indices.refresh(index=refit.target_index)
        client.indices.update_aliases(body={"actions": [
            {"remove": {"index": index, "alias": refit.name}},
            {"add": {"index": refit.target_index, "alias": refit.name, **props}}]})
        left = index
    else:
        index = refit.target_index
        client.indices.refresh(index=index)
        mappings = client.indices.get_mapping(index=index)[index]["mappings"]  # the user's _meta as it is now
        new = grdr_meta(refit.spec, mode="attached", fields=refit.fields, registry_key=refit.old_key)
        client.indices.put_mapping(index=index, body={"_meta": {**(mappings.get("_meta") or {}), "grdr": new}})
        left = f"{index} fields {', '.join(refit.old_fields.names())}"
    # The old key lists the old model's IDs; the refit's own key was only a staging area.
    id_registry.forget(client, [refit.old_key, refit.publish_as])
    return left
