"""The OpenSearch index of a catalog: mapping, versioned indices behind an alias, model fingerprint.

Pure builders (mapping, names) are separate from the few functions that talk to a client,
so the mapping is testable without a server.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
ID_FIELD = "grdr_ids"
PREFIX_FIELD = "grdr_prefixes"
VECTOR_FIELD = "grdr_vec"
# At most 201 characters: NAME-vNNNNNN then stays well under OpenSearch's 255-byte limit on index names.
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,200}$")
_VERSION_RE = re.compile(r"^(?P<alias>.+)-v(?P<n>\d{6})$")
# Strings longer than this are kept in _source but not indexed as keywords: keyword terms serve filters
# and exact matches, and Lucene refuses a term over 32 KB outright (which would fail the document).
KEYWORD_IGNORE_ABOVE = 1024


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


def validate_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"--index: {name!r} is not a valid index name; use lowercase letters, digits, '-' or '_'")
    if _VERSION_RE.match(name):
        raise ValueError(f"--index: {name!r} looks like a versioned index; pass the alias (without -vNNNNNN)")
    return name


def versioned_name(alias: str, n: int) -> str:
    return f"{alias}-v{n:06d}"


def index_body(spec: IndexSpec, *, shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    """Settings + mappings + _meta of one catalog index (DESIGN.md "The index")."""
    keyword = {"type": "keyword"}
    return {
        "settings": {
            "index": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                # Exact knn_score reranking needs no graph: keep index.knn off (no HNSW build cost).
                "knn": False,
            }
        },
        "mappings": {
            "_meta": {
                "grdr": {
                    "schema_version": SCHEMA_VERSION,
                    "fingerprint": spec.fingerprint,
                    "rerank_dim": spec.rerank_dim,
                    "views": spec.views,
                    "levels": spec.levels,
                    "codebook_size": spec.codebook_size,
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            },
            # Catalog metadata beyond the known fields stays in _source and is filterable as keyword.
            "dynamic_templates": [
                {"strings_as_keywords": {"match_mapping_type": "string",
                                         "mapping": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}}}
            ],
            "properties": {
                "video_id": keyword,
                ID_FIELD: keyword,
                # Shorter ID prefixes ("12", "12-201") let the query layer widen a too-small pool.
                PREFIX_FIELD: keyword,
                VECTOR_FIELD: {"type": "knn_vector", "dimension": spec.rerank_dim},
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


def fingerprint_of(mapping_response: dict[str, Any]) -> Optional[str]:
    """The model fingerprint from a GET _mapping response (first index in it)."""
    for body in mapping_response.values():
        return (body.get("mappings", {}).get("_meta", {}).get("grdr", {}) or {}).get("fingerprint")
    return None


class FingerprintMismatch(ValueError):
    """The index was filled by another model: its semantic IDs mean nothing to this one."""


# ---- adapters: the only functions here that talk to OpenSearch ----

def check_fingerprint(client, index: str, fingerprint: str, *, alias: str, model_dir: str | Path) -> None:
    """Refuse an index whose _meta fingerprint is not the model's (ingest and query both call this)."""
    found = fingerprint_of(client.indices.get_mapping(index=index))
    if found != fingerprint:
        raise FingerprintMismatch(
            f"--index: {alias} ({index}) holds semantic IDs of model {str(found)[:12]}, but --model {model_dir} "
            f"is {fingerprint[:12]}; IDs of another model are meaningless there. "
            f"Run `grdr ingest --reindex` to build a new index for this model and switch the alias when it is done")


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


def create_index(client, alias: str, spec: IndexSpec, *, point_alias: bool = True, replicas: int = 0) -> str:
    """Create the next versioned index; point the alias at it when nothing holds the alias yet."""
    validate_name(alias)
    if client.indices.exists(index=alias) and alias_target(client, alias) is None:
        raise ValueError(f"--index: a plain index named {alias!r} exists; drop it or choose another name")
    name = next_version(client, alias)
    client.indices.create(index=name, body=index_body(spec, replicas=replicas))
    if point_alias and alias_target(client, alias) is None:
        client.indices.put_alias(index=name, name=alias)
    return name


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


def index_info(client, alias: str) -> dict[str, Any]:
    target = alias_target(client, alias)
    if target is None:
        raise LookupError(f"--index: no alias {alias!r}; create it with `grdr index create --index {alias}`")
    stats = client.indices.stats(index=target, metric="docs,store")["indices"][target]["primaries"]
    mapping = client.indices.get_mapping(index=target)
    props = mapping[target]["mappings"].get("properties", {})
    return {
        "alias": alias,
        "index": target,
        "versions": concrete_indices(client, alias),
        "docs": stats["docs"]["count"],
        "store_bytes": stats["store"]["size_in_bytes"],
        "fields": {name: p.get("type", "object") + (f"[{p['dimension']}]" if "dimension" in p else "")
                   for name, p in sorted(props.items())},
        "meta": mapping[target]["mappings"].get("_meta", {}).get("grdr", {}),
        "fingerprint": fingerprint_of(mapping),
    }
