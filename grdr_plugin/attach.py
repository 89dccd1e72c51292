"""grdr on a user's own index: `grdr attach` adds grdr's fields to it, `grdr detach` takes it out of service.

Attach adds `grdr_ids`, `grdr_prefixes` and `grdr_vec` to the live mapping (a put-mapping: no
reindex) and records the model in `_meta.grdr`, merged into the user's `_meta` (a put-mapping replaces
`_meta` whole). It never changes the user's fields, settings or aliases. Detach marks the record
detached (query processes and backfills then refuse the index) and drops the index's rows from the ID
registry; the fields stay, because OpenSearch cannot remove a field from a mapping.

Planning is pure (an index's mapping in, the change or a refusal out); `attach` and `detach` are the adapters.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

from grdr_plugin import id_registry
from grdr_plugin.index import (
    DEFAULT_FIELDS,
    GrdrFields,
    IndexSpec,
    Resolved,
    grdr_meta,
    grdr_properties,
    meta_of,
    resolve,
    validate_user_index,
)


class AttachRefused(ValueError):
    """The index cannot take grdr's fields as it is; the message names the field or setting and the fix."""


@dataclass(frozen=True)
class IndexState:
    """What planning reads of one index."""

    index: str
    mappings: dict[str, Any]  # the index's `mappings` body (GET _mapping)
    knn_enabled: bool  # index.knn: true (its knn_vector fields get ANN graphs)


@dataclass(frozen=True)
class AttachPlan:
    index: str
    fields: GrdrFields
    add: dict[str, Any]  # grdr properties the mapping lacks
    meta: Optional[dict[str, Any]]  # the whole `_meta` to write; None when the record is already this one

    @property
    def changes(self) -> bool:
        return bool(self.add) or self.meta is not None


def _describe(field: dict[str, Any]) -> str:
    kind = field.get("type", "object")
    return f"{kind}[{field['dimension']}]" if "dimension" in field else kind


def _field_conflict(index: str, name: str, existing: Optional[dict[str, Any]], wanted: dict[str, Any]) -> Optional[str]:
    """Why an existing field of that name cannot hold grdr's values, or None (absent, or already right)."""
    if existing is None:
        return None
    same = existing.get("type") == wanted["type"] and existing.get("dimension") == wanted.get("dimension")
    if same:
        return None
    return (f"--index: {index} already maps {name!r} as {_describe(existing)}; grdr needs {_describe(wanted)} under "
            "that name, and OpenSearch cannot change a field's type in place. Rename your field (reindex into an "
            "index without it) or attach grdr to another index")


def _source_refusal(index: str, mappings: dict[str, Any]) -> Optional[str]:
    """grdr writes by partial update, which rewrites a document from its _source: it needs whole documents there."""
    source = mappings.get("_source") or {}
    if source.get("enabled") is False:
        return (f"--index: {index} does not keep _source (_source.enabled: false); grdr adds its fields with partial "
                "updates, which rebuild each document from its _source. grdr can extend only an index that keeps "
                "_source")
    partial = [*source.get("includes", []), *source.get("excludes", [])]
    if partial:
        which = "includes" if source.get("includes") else "excludes"
        return (f"--index: {index} keeps only part of each document in _source (_source.{which}: "
                f"{', '.join(partial)}); a partial update rebuilds a document from its _source, so it would drop "
                "the fields left out of it from the index. grdr can extend only an index whose _source holds whole "
                "documents")
    return None


def plan_attach(state: IndexState, spec: IndexSpec, *, registry_key: str) -> AttachPlan:
    """The mapping change that attaches the model `spec` to one index, or AttachRefused saying why not."""
    index, mappings = state.index, state.mappings
    why = _source_refusal(index, mappings)
    if why:
        raise AttachRefused(why)
    meta = meta_of(mappings)
    props = mappings.get("properties") or {}
    if meta is not None and meta.mode == "catalog":
        raise AttachRefused(f"--index: {index} is a grdr catalog index (grdr index create); it has grdr's fields "
                            "already: fill it with `grdr ingest`")
    unrecorded = meta is None or meta.fingerprint is None
    if unrecorded:
        fields = DEFAULT_FIELDS
    elif meta.fingerprint == spec.fingerprint:
        fields = meta.fields  # attached again (or after detach): the values there are this model's
    elif meta.detached:
        fields = GrdrFields.generation(spec.fingerprint)  # the old fields hold another model's IDs
    else:
        raise AttachRefused(f"--index: {index} is attached to model {meta.fingerprint[:12]}, not "
                            f"{spec.fingerprint[:12]}; refit it for this model with `grdr backfill --index "
                            f"{registry_key} --model MODEL_DIR ... --reindex`, or `grdr detach --index "
                            f"{registry_key}` first")
    wanted = grdr_properties(spec, fields, knn_enabled=state.knn_enabled)
    conflicts = [c for n in fields.names() if (c := _field_conflict(index, n, props.get(n), wanted[n]))]
    if conflicts:
        raise AttachRefused("; ".join(conflicts))
    taken = [n for n in fields.names() if n in props] if unrecorded else []
    if taken:  # right types, but whose IDs would they hold? nothing records it
        raise AttachRefused(f"--index: {index} already has a field {taken[0]!r} but no grdr record (_meta.grdr); "
                            "grdr does not write into fields it did not create. Rename that field, or attach grdr "
                            "to another index")
    add = {n: wanted[n] for n in fields.names() if n not in props}
    current = not unrecorded and meta.fingerprint == spec.fingerprint and not meta.detached \
        and meta.mode == "attached" and meta.fields == fields and meta.registry_key == registry_key
    new_meta = None if current else {**(mappings.get("_meta") or {}),
                                     "grdr": grdr_meta(spec, mode="attached", fields=fields, registry_key=registry_key)}
    return AttachPlan(index=index, fields=fields, add=add, meta=new_meta)


def plan_detach(index: str, mappings: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The whole `_meta` that marks the index detached (its other keys kept), or None when it is not attached."""
    meta = meta_of(mappings)
    if meta is None or meta.detached:
        return None
    if meta.mode == "catalog":
        raise AttachRefused(f"--index: {index} is a grdr catalog index; `grdr index drop` removes a catalog")
    raw = mappings["_meta"]
    detached = {**raw["grdr"], "detached": True, "detached_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return {**raw, "grdr": detached}


# ---- adapters ----

def refuse_user_index(client, name: str) -> None:
    """`grdr ingest` writes whole documents, into grdr's own catalogs only: refuse a user's index or alias
    (attached or not), whose documents a full write would replace. A name nothing holds yet is fine."""
    if not client.indices.exists(index=name):
        return
    resolved = resolve(client, name)
    mappings = client.indices.get_mapping(index=",".join(resolved.indices))
    for index in resolved.indices:
        meta = meta_of(mappings[index]["mappings"])
        if meta is not None and meta.mode == "attached":
            raise ValueError(f"--index: {name} is your own index with grdr attached; grdr writes only its own "
                             f"fields there: `grdr backfill --index {name} --model MODEL_DIR (--features-field F | "
                             "--dataset D | --videos V)`, and `grdr backfill ... --reindex` for another model")
        if resolved.is_alias and (meta is None or not index.startswith(f"{name}-v")):
            raise ValueError(f"--index: {name} is an alias over {index}, an index grdr did not create; grdr ingest "
                             "fills grdr's own catalogs. To add grdr to your index: `grdr attach`, then "
                             "`grdr backfill`")


def read_states(client, resolved: Resolved) -> list[IndexState]:
    names = ",".join(resolved.indices)
    mappings = client.indices.get_mapping(index=names)
    knn = client.indices.get_settings(index=names, name="index.knn", flat_settings=True)
    return [IndexState(index=i, mappings=mappings[i]["mappings"],
                       knn_enabled=str(knn.get(i, {}).get("settings", {}).get("index.knn", "false")).lower() == "true")
            for i in resolved.indices]


@dataclass
class AttachReport:
    name: str
    indices: list[str]
    fields: GrdrFields
    added: dict[str, list[str]] = field(default_factory=dict)  # index -> fields added to its mapping
    changed: list[str] = field(default_factory=list)  # indices whose mapping or _meta.grdr changed

    def public(self) -> dict[str, Any]:
        return {"index": self.name, "indices": self.indices, "fields": self.fields.model_dump(),
                "added": self.added, "changed": self.changed, "already_attached": not self.changed}


def attach(client, name: str, spec: IndexSpec, *, registry_key: Optional[str] = None) -> AttachReport:
    """Attach the model to every index behind `name` (an index or an alias); all are checked before any changes.
    registry_key: the name query processes follow for new IDs (default `name`: the one they are started with)."""
    resolved = resolve(client, validate_user_index(name))
    plans = [plan_attach(state, spec, registry_key=registry_key or name) for state in read_states(client, resolved)]
    report = AttachReport(name=name, indices=list(resolved.indices), fields=plans[0].fields)
    for plan in plans:
        if not plan.changes:
            continue
        body: dict[str, Any] = {"properties": plan.add}
        if plan.meta is not None:
            body["_meta"] = plan.meta
        client.indices.put_mapping(index=plan.index, body=body)
        report.changed.append(plan.index)
        if plan.add:
            report.added[plan.index] = sorted(plan.add)
    return report


@dataclass
class DetachReport:
    name: str
    detached: list[str]  # indices whose record was marked detached
    fields_kept: dict[str, list[str]]  # index -> grdr fields that stay in its mapping

    def public(self) -> dict[str, Any]:
        return {"index": self.name, "detached": self.detached, "fields_kept": self.fields_kept}


def detach(client, name: str) -> DetachReport:
    """Mark every index behind `name` detached and forget its published IDs; its fields and values stay."""
    resolved = resolve(client, validate_user_index(name))
    mappings = client.indices.get_mapping(index=",".join(resolved.indices))
    keys = {name, *resolved.indices}
    report = DetachReport(name=name, detached=[], fields_kept={})
    for index in resolved.indices:
        body = mappings[index]["mappings"]
        meta = meta_of(body)
        if meta is None:
            continue
        keys.add(meta.registry_key or name)
        report.fields_kept[index] = [n for n in meta.fields.names() if n in (body.get("properties") or {})]
        new_meta = plan_detach(index, body)
        if new_meta is not None:
            client.indices.put_mapping(index=index, body={"_meta": new_meta})
            report.detached.append(index)
    id_registry.forget(client, keys)
    return report
