"""The OpenSearch index of a catalog: mapping, versioned indices behind an alias, model fingerprint.

grdr's own fields (`grdr_ids`, `grdr_prefixes`, `grdr_vec`) and the `_meta.grdr` record are one
definition (`extension_mapping`): the mapping of `grdr index create`, the component template users
compose into their own index templates, and what `grdr attach` adds to a user's index.

Pure builders (mapping, names) are separate from the few functions that talk to a client,
so the mapping is testable without a server.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
ID_FIELD = "grdr_ids"
PREFIX_FIELD = "grdr_prefixes"
VECTOR_FIELD = "grdr_vec"
# grdr index create / grdr ingest: grdr writes whole documents.  attached: the user's index, where grdr
# writes its own fields only (partial updates) and never a user field.
Mode = Literal["catalog", "attached"]
COMPONENT_TEMPLATE = "grdr"
# A knn_vector field in an index with index.knn: true gets an ANN graph; without a method the k-NN plugin
# picks its native engine, which needs the plugin's native libraries (a node without them dies on the first
# flush). The lucene engine is pure Java: it works on every node, at the cost of a graph grdr does not use.
LUCENE_HNSW = {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}
# How a grdr catalog keeps its vectors: a faiss-engine field in an index whose approximate_threshold of -1
# means no graph is ever built (so the native library is never called and any node can hold it).  A `knn`
# query with a filter then scores every filtered video exactly, with Lucene's flat-vector scorer: cheaper
# per video than the knn_score script over doc values (docs/QUERY.md#where-the-time-goes).
FLAT_EXACT = {"name": "hnsw", "engine": "faiss", "space_type": "cosinesimil"}
FLAT_EXACT_SETTINGS = {
    "knn": True,
    "knn.advanced.approximate_threshold": -1,
    # Exact for any filter size, should a graph ever exist (a changed threshold): grdr's pool is scored exactly.
    "knn.advanced.filtered_exact_search_threshold": 2**31 - 1,
    # The vector kept in _source as written: on k-NN 3.5 a cleared scroll over an index whose _source vectors
    # are derived leaves its shards failing every later search that returns the vector (found on the local node).
    "knn.derived_source.enabled": False,
}
# A catalog's documents kept in the order of their smallest ID (`index.sort`, applied as segments are written
# and merged): videos whose smallest IDs share a prefix then sit together, and scoring a recalled pool reads
# their vectors in runs rather than scattered (docs/QUERY.md#where-the-time-goes).  Fixed when the index is created.
CATALOG_ORDER = {"sort.field": ID_FIELD, "sort.mode": "min"}
# How an index's recalled videos are scored (`_meta.grdr.scorer`): `knn_exact`, a knn query filtered to the
# pool over FLAT_EXACT vectors (grdr's catalogs); `knn_score`, the k-NN plugin's script over doc values
# (attached indices, whose vector field is the user's index's kind, and catalogs made before FLAT_EXACT).
Scorer = Literal["knn_exact", "knn_score"]
# Characters of the fingerprint that name a generation of fields (grdr_ids_<tag>): 2^48 models apart.
GENERATION_TAG = 12
# At most 201 characters: NAME-vNNNNNN then stays well under OpenSearch's 255-byte limit on index names.
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,200}$")
_VERSION_RE = re.compile(r"^(?P<alias>.+)-v(?P<n>\d{6})$")
# Strings longer than this are kept in _source but not indexed as keywords: keyword terms serve filters
# and exact matches, and Lucene refuses a term over 32 KB outright (which would fail the document).
KEYWORD_IGNORE_ABOVE = 1024
# Where a catalog hit's video ID and title are read, as doc values, when the search asks for no other field:
# OpenSearch cuts a `_source` down to the title by parsing all of it, the 2 KB vector included, and reading `_id`
# opens the stored fields; doc values skip both (docs/QUERY.md#the-one-request).  Every catalog document
# holds both: ingest refuses a title longer than KEYWORD_IGNORE_ABOVE, which title.raw would leave out.
HIT_ID_FIELD = "video_id"
HIT_TITLE_FIELD = "title.raw"
# The cardinality aggregation's highest precision: distinct-ID counts below it are near-exact, and a catalog's
# ID count (views x videos, minus collisions) is rarely far above it.
DISTINCT_IDS_PRECISION = 40_000
# OpenSearch's own limit on an index's primary shards.
MAX_SHARDS = 1024


class IndexSpec(BaseModel):
    """What the index needs to know about the model that fills it."""

    # 16000: the largest knn_vector dimension the k-NN plugin accepts
    rerank_dim: int = Field(gt=0, le=16000, description="dimension of grdr_vec (the reranker's space)")
    fingerprint: str = Field(min_length=8, description="hash of the model's weights + config")
    views: Optional[int] = Field(None, ge=1)
    levels: Optional[int] = Field(None, ge=1)
    codebook_size: Optional[int] = Field(None, ge=2)

    @classmethod
    def from_model_dir(cls, model_dir: Path | str) -> "IndexSpec":
        from grdr_plugin.model.artifacts import read_config

        cfg = read_config(model_dir)
        if not cfg.fingerprint:
            raise ValueError(f"--model: {Path(model_dir) / 'config.json'} has no fingerprint; "
                             "is it a grdr model folder?")
        return cls(**cfg.model_dump(include=set(cls.model_fields)))


class GrdrFields(BaseModel):
    """Names of grdr's three fields in an index.  The defaults everywhere, except after a refit of an
    attached concrete index (fields cannot be dropped from a mapping, so the new model's values go to a
    new generation of fields beside the old: `generation`); `_meta.grdr.fields` then records the names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: str = ID_FIELD
    prefixes: str = PREFIX_FIELD
    vec: str = VECTOR_FIELD

    @classmethod
    def generation(cls, fingerprint: str) -> "GrdrFields":
        tag = fingerprint[:GENERATION_TAG]
        return cls(ids=f"{ID_FIELD}_{tag}", prefixes=f"{PREFIX_FIELD}_{tag}", vec=f"{VECTOR_FIELD}_{tag}")

    def names(self) -> tuple[str, str, str]:
        return self.ids, self.prefixes, self.vec


DEFAULT_FIELDS = GrdrFields()


class GrdrMeta(BaseModel):
    """`_meta.grdr` of an index, as read back (grdr_meta writes it)."""

    model_config = ConfigDict(extra="allow")

    fingerprint: Optional[str] = None
    mode: Mode = "catalog"  # indices made before modes existed are grdr's own catalogs
    fields: GrdrFields = DEFAULT_FIELDS
    registry_key: Optional[str] = Field(None, description="name new IDs are published under (attached indices)")
    detached: bool = False
    scorer: Scorer = "knn_score"  # records without one predate FLAT_EXACT
    # Whether every document's ID and title are in HIT_ID_FIELD's and HIT_TITLE_FIELD's doc values (catalogs
    # made since ingest bounds titles); records without one read hits from `_source`.
    hit_doc_values: bool = False


def grdr_meta(spec: IndexSpec, *, mode: Mode, fields: GrdrFields = DEFAULT_FIELDS,
              registry_key: Optional[str] = None, scorer: Scorer = "knn_score",
              hit_doc_values: bool = False) -> dict[str, Any]:
    """The `_meta.grdr` record: which model's IDs the index holds, and how grdr may write and read it."""
    meta: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "fingerprint": spec.fingerprint,
        "rerank_dim": spec.rerank_dim,
        "views": spec.views,
        "levels": spec.levels,
        "codebook_size": spec.codebook_size,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": mode,
        "scorer": scorer,
        "hit_doc_values": hit_doc_values,
    }
    if fields != DEFAULT_FIELDS:
        meta["fields"] = fields.model_dump()
    if registry_key is not None:
        meta["registry_key"] = registry_key
    return meta


def grdr_properties(spec: IndexSpec, fields: GrdrFields = DEFAULT_FIELDS, *,
                    knn_enabled: bool = False, scorer: Scorer = "knn_score") -> dict[str, Any]:
    """grdr's three fields; knn_enabled: for an index with index.knn: true (see LUCENE_HNSW); scorer
    knn_exact: the vector as FLAT_EXACT keeps it."""
    vec: dict[str, Any] = {"type": "knn_vector", "dimension": spec.rerank_dim}
    if scorer == "knn_exact":
        vec["method"] = dict(FLAT_EXACT)
    elif knn_enabled:
        vec["method"] = dict(LUCENE_HNSW)
    return {
        fields.ids: {"type": "keyword"},
        # Shorter ID prefixes ("12", "12-201") let the query layer widen a too-small pool.
        fields.prefixes: {"type": "keyword"},
        fields.vec: vec,
    }


def extension_mapping(spec: IndexSpec, *, mode: Mode, fields: GrdrFields = DEFAULT_FIELDS,
                      knn_enabled: bool = False, registry_key: Optional[str] = None,
                      scorer: Scorer = "knn_score", hit_doc_values: bool = False) -> dict[str, Any]:
    """grdr's part of a mapping: its fields and `_meta.grdr`, the one definition every grdr index builds on."""
    return {"_meta": {"grdr": grdr_meta(spec, mode=mode, fields=fields, registry_key=registry_key, scorer=scorer,
                                        hit_doc_values=hit_doc_values)},
            "properties": grdr_properties(spec, fields, knn_enabled=knn_enabled, scorer=scorer)}


def component_template_body(spec: IndexSpec, *, knn_enabled: bool = False) -> dict[str, Any]:
    """A component template holding grdr's fields, for users to compose into their own index templates
    (`composed_of`); indices made from it are attached indices, filled by `grdr backfill`."""
    return {"template": {"mappings": extension_mapping(spec, mode="attached", knn_enabled=knn_enabled)},
            "_meta": {"description": "grdr semantic IDs and rerank vector (grdr attach, grdr backfill)",
                      "fingerprint": spec.fingerprint}}


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"--index: {name!r} is not a valid index name; use lowercase letters, digits, '-' or '_'")
    if _VERSION_RE.match(name):
        raise ValueError(f"--index: {name!r} looks like a versioned index; pass the alias (without -vNNNNNN)")
    return name


def versioned_name(alias: str, n: int) -> str:
    return f"{alias}-v{n:06d}"


def index_body(spec: IndexSpec, *, shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    """Settings + mappings + _meta of one catalog index (DESIGN.md "The index"): grdr's extension plus the
    catalog's own fields."""
    keyword = {"type": "keyword"}
    grdr = extension_mapping(spec, mode="catalog", scorer="knn_exact", hit_doc_values=True)
    return {
        "settings": {"index": {"number_of_shards": shards, "number_of_replicas": replicas, **FLAT_EXACT_SETTINGS,
                               **CATALOG_ORDER}},
        "mappings": {
            "_meta": grdr["_meta"],
            # Catalog metadata beyond the known fields stays in _source and is filterable as keyword.
            "dynamic_templates": [
                {"strings_as_keywords": {"match_mapping_type": "string",
                                         "mapping": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}}}
            ],
            "properties": {
                HIT_ID_FIELD: keyword,
                **grdr["properties"],
                # title.raw: HIT_TITLE_FIELD
                "title": {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}}},
                "description": {"type": "text"},
                "tags": keyword,
                "duration_s": {"type": "float"},
                "ingested_at": {"type": "date"},
                "split": keyword,
                "source": keyword,
            },
        },
    }


class Layout(BaseModel):
    """An index's primary shards and replicas, and how they were chosen (said in the commands' output)."""

    model_config = ConfigDict(frozen=True)

    shards: int = Field(ge=1, le=MAX_SHARDS, description="number_of_shards")
    replicas: int = Field(ge=0, description="number_of_replicas")
    why: str = ""

    def describe(self) -> str:
        text = f"{self.shards} shard{'s' if self.shards != 1 else ''}, {self.replicas} replica" + \
            ("s" if self.replicas != 1 else "")
        return f"{text} ({self.why})" if self.why else text


def default_replicas(data_nodes: int) -> int:
    """One replica wherever a second data node can hold it (a node loss then loses no shard); on one node a
    replica could never be assigned and the index would stay yellow."""
    return 1 if data_nodes >= 2 else 0


def choose_layout(shards: int, replicas: Optional[int], data_nodes: Optional[int]) -> Layout:
    """Pure: the layout for `shards` and `replicas` (None: default_replicas of the cluster's data nodes;
    data_nodes None: the cluster's health may not be read)."""
    if data_nodes is None:
        return Layout(shards=shards, replicas=replicas or 0,
                      why="data nodes unknown: no cluster:monitor/health permission; set GRDR_INDEX_REPLICAS"
                      if replicas is None else "as asked")
    nodes = f"{data_nodes} data node{'s' if data_nodes != 1 else ''}"
    if replicas is None:
        return Layout(shards=shards, replicas=default_replicas(data_nodes), why=f"default for {nodes}")
    if replicas >= data_nodes:  # a shard's copies must sit on different nodes
        return Layout(shards=shards, replicas=replicas,
                      why=f"{nodes}: yellow until the cluster has {replicas + 1}")
    return Layout(shards=shards, replicas=replicas, why="as asked")


def fingerprint_of(mapping_response: dict[str, Any]) -> Optional[str]:
    """The model fingerprint from a GET _mapping response (first index in it)."""
    for body in mapping_response.values():
        return (body.get("mappings", {}).get("_meta", {}).get("grdr", {}) or {}).get("fingerprint")
    return None


def meta_of(mappings: dict[str, Any]) -> Optional[GrdrMeta]:
    """`_meta.grdr` of one index's `mappings` body; None when grdr never touched the index."""
    raw = (mappings.get("_meta") or {}).get("grdr")
    return GrdrMeta.model_validate(raw) if isinstance(raw, dict) else None


def flat_fields(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every field of a mapping by its dotted path, fields of objects and multi-fields (`title.raw`) included;
    a nested object is one entry of type nested (its fields answer nested queries only)."""
    out: dict[str, dict[str, Any]] = {}
    for name, field in properties.items():
        path = f"{prefix}{name}"
        if "properties" in field and field.get("type") != "nested":
            out.update(flat_fields(field["properties"], f"{path}."))
        else:
            out[path] = field
        for sub, subfield in (field.get("fields") or {}).items():
            out[f"{path}.{sub}"] = subfield
    return out


class FingerprintMismatch(ValueError):
    """The index was filled by another model: its semantic IDs mean nothing to this one."""


def serving_refusal(name: str, index: str, meta: Optional[GrdrMeta], fingerprint: str,
                    model_dir: str | Path) -> Optional[str]:
    """Why the model `fingerprint` may not fill or search `index` (reached as `name`), or None."""
    where = name if name == index else f"{name} ({index})"
    if meta is None or meta.fingerprint is None:
        return f"--index: {where} has no grdr fields; add them with `grdr attach --index {name} --model {model_dir}`"
    if meta.detached:
        return (f"--index: {where} was detached from grdr (`grdr detach`); "
                f"`grdr attach --index {name} --model {model_dir}` serves it again")
    if meta.fingerprint == fingerprint:
        return None
    fix = ("Run `grdr ingest --reindex` to build a new index for this model and switch the alias when it is done"
           if meta.mode == "catalog" else
           f"Refit it for this model with `grdr backfill --index {name} --model {model_dir} ... --reindex`")
    return (f"--index: {where} holds semantic IDs of model {meta.fingerprint[:12]}, but --model {model_dir} "
            f"is {fingerprint[:12]}; IDs of another model are meaningless there. {fix}")


# Characters OpenSearch refuses in an index name, and its limit on the name's bytes.
_BAD_INDEX_CHARS = set('\\/*?"<>| ,#:')
MAX_INDEX_NAME_BYTES = 255


def validate_user_index(name: str) -> str:
    """A name of the user's own index or alias, for the commands that extend it (grdr attach, backfill)."""
    bad = sorted(set(name) & _BAD_INDEX_CHARS)
    if not name or name != name.lower() or bad or name[0] in "-_+." or len(name.encode()) > MAX_INDEX_NAME_BYTES:
        why = f"it holds {''.join(bad)!r}" if bad else "it must be lowercase, start with a letter or digit"
        raise ValueError(f"--index: {name!r} is not an index or alias name ({why}); name one index or alias, "
                         "without wildcards or commas")
    return name


@dataclass(frozen=True)
class Resolved:
    """An index or alias name and the concrete indices behind it."""

    name: str
    indices: tuple[str, ...]
    is_alias: bool


# ---- adapters: the only functions here that talk to OpenSearch ----

def resolve(client, name: str) -> Resolved:
    """The concrete indices behind an alias, or the index itself; LookupError when neither exists."""
    # index=name scopes the alias lookup to the name itself (least-privilege roles, as in alias_target)
    if client.indices.exists_alias(index=name, name=name):
        return Resolved(name, tuple(sorted(client.indices.get_alias(index=name, name=name))), True)
    if client.indices.exists(index=name):
        return Resolved(name, (name,), False)
    raise LookupError(f"--index: no index or alias named {name!r}")


def put_component_template(client, spec: IndexSpec, name: str = COMPONENT_TEMPLATE, *,
                           knn_enabled: bool = False) -> dict[str, Any]:
    """Create or replace the component template `name` (component_template_body); -> its body."""
    body = component_template_body(spec, knn_enabled=knn_enabled)
    client.cluster.put_component_template(name=name, body=body)
    return body


def served_meta(client, resolved: Resolved, fingerprint: str, model_dir: str | Path) -> tuple[GrdrMeta, dict]:
    """Refuse unless every index behind the name holds this model's grdr fields (one generation of them);
    -> (their `_meta.grdr`, the first index's `mappings` body)."""
    mappings = client.indices.get_mapping(index=",".join(resolved.indices))
    metas = {index: meta_of(mappings[index]["mappings"]) for index in resolved.indices}
    for index, meta in metas.items():
        why = serving_refusal(resolved.name, index, meta, fingerprint, model_dir)
        if why:
            raise FingerprintMismatch(why)
    first = resolved.indices[0]
    meta = metas[first]
    assert meta is not None  # serving_refusal refused a missing record
    differ = [i for i, m in metas.items() if m is not None and (m.fields, m.mode) != (meta.fields, meta.mode)]
    if differ:
        raise ValueError(f"--index: {resolved.name}'s indices {first} and {differ[0]} keep grdr's fields under "
                         "different names; serve them under separate aliases")
    if any(m is not None and m.scorer == "knn_score" for m in metas.values()):
        meta = meta.model_copy(update={"scorer": "knn_score"})  # the script reads every kind of vector field
    if any(m is not None and not m.hit_doc_values for m in metas.values()):
        meta = meta.model_copy(update={"hit_doc_values": False})
    return meta, mappings[first]["mappings"]


def check_fingerprint(client, index: str, fingerprint: str, *, alias: str, model_dir: str | Path) -> None:
    """Refuse an index whose _meta fingerprint is not the model's (ingest and query both call this)."""
    mapping = client.indices.get_mapping(index=index)
    why = serving_refusal(alias, index, meta_of(next(iter(mapping.values()))["mappings"]), fingerprint, model_dir)
    if why:
        raise FingerprintMismatch(why)


def concrete_indices(client, alias: str) -> list[str]:
    """Versioned indices that belong to alias (whether or not the alias points at them)."""
    found = client.indices.get(index=f"{alias}-v*", ignore_unavailable=True, allow_no_indices=True)
    return sorted(name for name in found if _VERSION_RE.match(name) and _VERSION_RE.match(name)["alias"] == alias)


def alias_target(client, alias: str) -> Optional[str]:
    # index=alias scopes the lookup to the alias itself: a least-privilege user (docs/opensearch-roles.yml)
    # may read the aliases of its own indices, not those of every index
    if not client.indices.exists_alias(index=alias, name=alias):
        return None
    targets = list(client.indices.get_alias(index=alias, name=alias))
    return targets[0] if targets else None


def next_version(client, alias: str) -> str:
    existing = concrete_indices(client, alias)
    n = max((int(_VERSION_RE.match(i)["n"]) for i in existing), default=0) + 1
    return versioned_name(alias, n)


def create_index(client, alias: str, spec: IndexSpec, *, point_alias: bool = True,
                 layout: Optional[Layout] = None) -> str:
    """Create the next versioned index (layout: plan_layout's when None); point the alias at it when nothing
    holds the alias yet."""
    validate_name(alias)
    if client.indices.exists(index=alias) and alias_target(client, alias) is None:
        raise ValueError(f"--index: a plain index named {alias!r} exists; drop it or choose another name")
    layout = layout or plan_layout(client)
    name = next_version(client, alias)
    client.indices.create(index=name, body=index_body(spec, shards=layout.shards, replicas=layout.replicas))
    if point_alias and alias_target(client, alias) is None:
        client.indices.put_alias(index=name, name=alias)
    return name


def ensure_index(client, alias: str, spec: IndexSpec, *, model_dir: str | Path,
                 layout: Optional[Layout] = None) -> tuple[str, bool]:
    """The index the alias points at when it holds this model's IDs, else a new one the alias points at;
    -> (index, created). Another model's index is refused (FingerprintMismatch): `grdr index create` run twice
    changes nothing and never leaves a version nothing points at."""
    current = alias_target(client, validate_name(alias))
    if current is None:
        return create_index(client, alias, spec, layout=layout), True
    check_fingerprint(client, current, spec.fingerprint, alias=alias, model_dir=model_dir)
    return current, False


def data_nodes(client) -> Optional[int]:
    """The cluster's data nodes; None for a user who may not read cluster health (least-privilege roles)."""
    from opensearchpy.exceptions import AuthorizationException

    try:
        return int(client.cluster.health()["number_of_data_nodes"])
    except AuthorizationException:
        return None


def layout_of(client, index: str) -> Layout:
    """The shards and replicas an existing index has."""
    # GET <index> (indices:admin/get, which the ingest role holds), not GET <index>/_settings
    settings = client.indices.get(index=index)[index]["settings"]["index"]
    return Layout(shards=int(settings["number_of_shards"]), replicas=int(settings["number_of_replicas"]),
                  why=f"as {index}")


def plan_layout(client, shards: Optional[int] = None, replicas: Optional[int] = None, *,
                like: Optional[str] = None) -> Layout:
    """What a new index gets: shards/replicas given, else those of index `like` (a reindex keeps its layout),
    else GRDR_INDEX_SHARDS / GRDR_INDEX_REPLICAS, replicas unset: default_replicas of the data nodes now."""
    if like is not None:
        kept = layout_of(client, like)
        if shards is None and replicas is None:
            return kept
        shards = kept.shards if shards is None else shards
        replicas = kept.replicas if replicas is None else replicas
    else:
        from grdr_plugin.settings import get_settings

        settings = get_settings()
        shards = settings.index_shards if shards is None else shards
        replicas = settings.index_replicas if replicas is None else replicas
    return choose_layout(shards, replicas, data_nodes(client))


def swap_alias(client, alias: str, new_index: str) -> Optional[str]:
    """Atomically move alias to new_index (blue/green); returns the index it left."""
    old = alias_target(client, alias)
    actions: list[dict[str, Any]] = [{"add": {"index": new_index, "alias": alias}}]
    if old and old != new_index:
        actions.insert(0, {"remove": {"index": old, "alias": alias}})
    client.indices.update_aliases(body={"actions": actions})
    return old


def drop_index(client, alias: str) -> list[str]:
    """Remove the alias, every versioned index behind it and their rows in the ID registry."""
    from grdr_plugin import id_registry

    names = concrete_indices(client, alias)
    if names:
        client.indices.delete(index=",".join(names))
    id_registry.forget(client, [alias, *names])
    return names


def distinct_ids(client, index: str) -> int:
    """Distinct semantic IDs in the index (the cardinality aggregation: near-exact below
    DISTINCT_IDS_PRECISION, within about 1 % above)."""
    body = {"size": 0, "aggs": {"ids": {"cardinality": {"field": ID_FIELD,
                                                         "precision_threshold": DISTINCT_IDS_PRECISION}}}}
    return int(client.search(index=index, body=body)["aggregations"]["ids"]["value"])


def index_info(client, alias: str) -> dict[str, Any]:
    target = alias_target(client, alias)
    if target is None:
        raise LookupError(f"--index: no alias {alias!r}; create it with `grdr index create --index {alias}`")
    stats = client.indices.stats(index=target, metric="docs,store")["indices"][target]["primaries"]
    mapping = client.indices.get_mapping(index=target)
    props = mapping[target]["mappings"].get("properties", {})
    settings = client.indices.get_settings(index=target)[target]["settings"]["index"]
    return {
        "alias": alias,
        "index": target,
        "versions": concrete_indices(client, alias),
        "docs": stats["docs"]["count"],
        "distinct_ids": distinct_ids(client, target),
        "store_bytes": stats["store"]["size_in_bytes"],
        "shards": int(settings["number_of_shards"]),
        "replicas": int(settings["number_of_replicas"]),
        # the field the documents are kept in order of (CATALOG_ORDER), None for an index made without it
        "sorted_by": settings.get("sort", {}).get("field"),
        "health": client.cluster.health(index=target)["status"],
        "fields": {name: p.get("type", "object") + (f"[{p['dimension']}]" if "dimension" in p else "")
                   for name, p in sorted(props.items())},
        "meta": mapping[target]["mappings"].get("_meta", {}).get("grdr", {}),
        "fingerprint": fingerprint_of(mapping),
    }


def list_catalogs(client) -> list[dict[str, Any]]:
    """Every index holding grdr's `_meta.grdr`, grouped by catalog: a catalog's versions `NAME-vNNNNNN` under
    their alias NAME (`index`: the one the alias points at, None when none does), any other grdr index
    (`mode` attached) under its own name; with the served index's documents, health and model fingerprint."""
    metas = client.indices.get_mapping(index="*", filter_path="*.mappings._meta.grdr", expand_wildcards="open")
    if not metas:
        return []
    names = ",".join(sorted(metas))
    rows = {r["index"]: r for r in client.cat.indices(index=names, format="json", h="index,health,docs.count")}
    aliases = {name: set(body.get("aliases", {})) for name, body in client.indices.get_alias(index=names).items()}
    catalogs: dict[str, dict[str, Any]] = {}
    for name in sorted(metas):
        meta = GrdrMeta.model_validate(metas[name]["mappings"]["_meta"]["grdr"])
        version = _VERSION_RE.match(name)
        key = version["alias"] if version else name
        entry = catalogs.setdefault(key, {"alias": key, "index": None, "versions": [], "docs": None, "health": None,
                                          "fingerprint": None, "mode": meta.mode})
        entry["versions"].append(name)
        if version is None or key in aliases.get(name, ()):  # the index this catalog serves
            row = rows.get(name, {})
            entry.update(index=name, docs=int(row.get("docs.count") or 0), health=row.get("health"),
                         fingerprint=meta.fingerprint)
    return [catalogs[k] for k in sorted(catalogs)]
