"""User filters (tags, duration range, any keyword field) -> OpenSearch filter clauses.

Values only ever become query values; field names are checked against the index mapping.
"""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Values per filter list: each is one term its terms clause looks up.  A thousand covers a user's pick of
# tags or categories and keeps one request's filters small (OpenSearch's own cap, index.max_terms_count, is 65,536).
MAX_VALUES = 1000


class SearchFilters(BaseModel):
    # Strict numbers: true or "5" is a mistake, not 1.0 or 5.0; NaN/Infinity would reach OpenSearch as invalid JSON.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tags: Optional[list[str]] = Field(None, description="any of these tags")
    duration_min: Optional[float] = Field(None, ge=0, strict=True, description="duration_s >= this")
    duration_max: Optional[float] = Field(None, ge=0, strict=True, description="duration_s <= this")
    fields: dict[str, list[str]] = Field(default_factory=dict, description="keyword field -> any of these values")

    @field_validator("tags")
    @classmethod
    def _bounded_tags(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is not None and len(v) > MAX_VALUES:
            raise ValueError(f"filters.tags: at most {MAX_VALUES} values")
        return v

    @field_validator("fields")
    @classmethod
    def _bounded_fields(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, values in v.items():
            if len(values) > MAX_VALUES:
                raise ValueError(f"filters.fields.{name}: at most {MAX_VALUES} values")
        return v

    @model_validator(mode="after")
    def _ordered_range(self) -> "SearchFilters":
        if self.duration_min is not None and self.duration_max is not None and self.duration_min > self.duration_max:
            raise ValueError("filters.duration_min: must not exceed filters.duration_max")
        return self


def filter_clauses(filters: Optional[SearchFilters], keyword_fields: set[str]) -> list[dict[str, Any]]:
    """Filter clauses for a bool.filter; `keyword_fields` are the index's filterable keyword fields."""
    if filters is None:
        return []
    clauses: list[dict[str, Any]] = []
    if filters.tags:
        clauses.append({"terms": {"tags": list(filters.tags)}})
    if filters.duration_min is not None or filters.duration_max is not None:
        rng = {}
        if filters.duration_min is not None:
            rng["gte"] = filters.duration_min
        if filters.duration_max is not None:
            rng["lte"] = filters.duration_max
        clauses.append({"range": {"duration_s": rng}})
    for name, values in filters.fields.items():
        if name not in keyword_fields:
            raise ValueError(f"filters.fields.{name}: not a keyword field of the index "
                             f"(filterable: {', '.join(sorted(keyword_fields)) or 'none'})")
        clauses.append({"terms": {name: list(values)}})
    return clauses


def keyword_fields_of(mapping_properties: dict[str, Any]) -> set[str]:
    """Keyword fields a user may filter on (internal grdr fields excluded)."""
    internal = {"grdr_ids", "grdr_prefixes"}
    return {n for n, p in mapping_properties.items() if p.get("type") == "keyword" and n not in internal}
