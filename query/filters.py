"""User filters -> OpenSearch filter clauses.

Two families, combinable: the grdr catalog's own (`tags`, `duration_min`/`duration_max`, `fields`:
keyword field -> any of these values), and filters on any field of the index's mapping, a user's own
index included: `term` and `terms` on keyword, numeric, date and boolean fields, `range` on numeric and
date fields. Values only ever become query values; field names and value types are checked against the
mapping, so a mistake is refused with the field named instead of matching nothing.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Collection, Literal, Mapping, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from grdr_plugin.index import DEFAULT_FIELDS, GrdrFields, flat_fields

# Values per filter list: each is one term its terms clause looks up.  A thousand covers a user's pick of
# tags or categories and keeps one request's filters small (OpenSearch's own cap, index.max_terms_count, is 65,536).
MAX_VALUES = 1000
# Fields per filter family: each is a clause of every request; far beyond a search form's fields.
MAX_FIELDS = 64
# Date values travel with OpenSearch's default date format, so they parse whatever format the field declares.
DATE_FORMAT = "strict_date_optional_time||epoch_millis"
_DATE_MATH = re.compile(r"([+-]\d+[yMwdhHms])*(/[yMwdhHms])?")

FieldKind = Literal["keyword", "numeric", "date", "boolean", "text", "other"]
_KINDS: dict[str, FieldKind] = {
    "keyword": "keyword", "constant_keyword": "keyword",
    **dict.fromkeys(("long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float",
                     "unsigned_long"), "numeric"),
    "date": "date", "date_nanos": "date", "boolean": "boolean", "text": "text", "match_only_text": "text",
}
Scalar = Union[StrictBool, StrictInt, StrictFloat, StrictStr]


class Bounds(BaseModel):
    """A range: numbers for a numeric field; ISO 8601 dates, date math (`now-7d/d`) or epoch millis for a date field."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    gte: Optional[Union[StrictInt, StrictFloat, StrictStr]] = None
    gt: Optional[Union[StrictInt, StrictFloat, StrictStr]] = None
    lte: Optional[Union[StrictInt, StrictFloat, StrictStr]] = None
    lt: Optional[Union[StrictInt, StrictFloat, StrictStr]] = None

    @model_validator(mode="after")
    def _one_bound_per_side(self) -> "Bounds":
        if (self.gte, self.gt, self.lte, self.lt) == (None, None, None, None):
            raise ValueError("give at least one of gte, gt, lte, lt")
        if self.gte is not None and self.gt is not None or self.lte is not None and self.lt is not None:
            raise ValueError("give one lower bound (gte or gt) and one upper bound (lte or lt) at most")
        return self

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class SearchFilters(BaseModel):
    # Strict numbers: true or "5" is a mistake, not 1.0 or 5.0; NaN/Infinity would reach OpenSearch as invalid JSON.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    tags: Optional[list[str]] = Field(None, description="any of these tags")
    duration_min: Optional[float] = Field(None, ge=0, strict=True, description="duration_s >= this")
    duration_max: Optional[float] = Field(None, ge=0, strict=True, description="duration_s <= this")
    fields: dict[str, list[str]] = Field(default_factory=dict, description="keyword field -> any of these values")
    term: dict[str, Scalar] = Field(default_factory=dict,
                                    description="field -> this value (keyword, numeric, date or boolean field)")
    terms: dict[str, list[Scalar]] = Field(default_factory=dict,
                                           description="field -> any of these values (keyword, numeric, date or "
                                                       "boolean field)")
    range: dict[str, Bounds] = Field(default_factory=dict, description="numeric or date field -> bounds")

    @field_validator("tags")
    @classmethod
    def _bounded_tags(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is not None and len(v) > MAX_VALUES:
            raise ValueError(f"filters.tags: at most {MAX_VALUES} values")
        return v

    @field_validator("fields", "terms")
    @classmethod
    def _bounded_lists(cls, v: dict[str, list], info) -> dict[str, list]:
        for name, values in v.items():
            if len(values) > MAX_VALUES:
                raise ValueError(f"filters.{info.field_name}.{name}: at most {MAX_VALUES} values")
        return v

    @field_validator("fields", "term", "terms", "range")
    @classmethod
    def _bounded_fields(cls, v: dict, info) -> dict:
        if len(v) > MAX_FIELDS:
            raise ValueError(f"filters.{info.field_name}: at most {MAX_FIELDS} fields")
        return v

    @model_validator(mode="after")
    def _ordered_range(self) -> "SearchFilters":
        if self.duration_min is not None and self.duration_max is not None and self.duration_min > self.duration_max:
            raise ValueError("filters.duration_min: must not exceed filters.duration_max")
        return self


def field_kinds_of(mapping_properties: dict[str, Any],
                   grdr_fields: GrdrFields = DEFAULT_FIELDS) -> dict[str, FieldKind]:
    """Every field a filter may name, by dotted path (objects' fields and multi-fields included), with its kind;
    grdr's own fields are not filters."""
    internal = set(grdr_fields.names())
    return {path: _KINDS.get(field.get("type", "object"), "other")
            for path, field in flat_fields(mapping_properties).items() if path not in internal}


def _date_ok(value: str) -> bool:
    """ISO 8601 (a date, or a date and time), `now`, either followed by date math (`||+1M/d`, `now-7d`)."""
    if value.startswith("now"):
        return bool(_DATE_MATH.fullmatch(value[3:]))
    anchor, _, math = value.partition("||")
    try:
        datetime.fromisoformat(anchor.replace("Z", "+00:00"))
    except ValueError:
        return False
    return bool(_DATE_MATH.fullmatch(math))


def _value_problem(kind: FieldKind, value: Any) -> Optional[str]:
    """Why `value` cannot be compared with a field of `kind`, or None."""
    if kind == "keyword":
        return None if isinstance(value, str) else "a keyword field takes strings"
    if kind == "numeric":
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if number else "a numeric field takes numbers"
    if kind == "boolean":
        return None if isinstance(value, bool) else "a boolean field takes true or false"
    if kind == "date":
        if isinstance(value, int) and not isinstance(value, bool):
            return None  # epoch milliseconds
        if isinstance(value, str) and _date_ok(value):
            return None
        return "a date field takes ISO 8601 dates ('2024-05-01', '2024-05-01T12:00:00Z'), date math ('now-7d/d') " \
               "or epoch milliseconds"
    return None


def _checked(where: str, name: str, kinds: Mapping[str, FieldKind], allowed: Collection[FieldKind],
             values: Collection[Any]) -> FieldKind:
    """The field's kind, after refusing an unknown field, a kind this filter cannot compare, or a mistyped value."""
    kind = kinds.get(name)
    if kind is None:
        filterable = sorted(n for n, k in kinds.items() if k in allowed)
        raise ValueError(f"{where}: {name!r} is not a field of the index (fields this filter takes: "
                         f"{', '.join(filterable) or 'none'})")
    if kind not in allowed:
        hint = "; filter on a keyword field or keyword sub-field (e.g. title.raw)" if kind == "text" else ""
        what = f"a {kind} field" if kind != "other" else "neither a keyword, numeric, date nor boolean field"
        raise ValueError(f"{where}: {name} is {what}; this filter takes {', '.join(allowed)} fields{hint}")
    for value in values:
        problem = _value_problem(kind, value)
        if problem:
            raise ValueError(f"{where}: {value!r}: {problem}")
    return kind


def _equals(name: str, kind: FieldKind, values: list[Any]) -> dict[str, Any]:
    """Any of `values`; a date compares as a one-instant range, so it parses in the default format."""
    if kind != "date":
        return {"term": {name: values[0]}} if len(values) == 1 else {"terms": {name: values}}
    ranges = [{"range": {name: {"gte": v, "lte": v, "format": DATE_FORMAT}}} for v in values]
    return ranges[0] if len(ranges) == 1 else {"bool": {"should": ranges, "minimum_should_match": 1}}


def filter_clauses(filters: Optional[SearchFilters], kinds: Mapping[str, FieldKind]) -> list[dict[str, Any]]:
    """Filter clauses for a bool.filter; `kinds`: the index's fields by kind (`field_kinds_of`)."""
    if filters is None:
        return []
    clauses: list[dict[str, Any]] = []
    if filters.tags:
        _checked("filters.tags", "tags", kinds, ("keyword",), filters.tags)
        clauses.append({"terms": {"tags": list(filters.tags)}})
    if filters.duration_min is not None or filters.duration_max is not None:
        rng = {}
        if filters.duration_min is not None:
            rng["gte"] = filters.duration_min
        if filters.duration_max is not None:
            rng["lte"] = filters.duration_max
        _checked("filters.duration_min" if "gte" in rng else "filters.duration_max", "duration_s", kinds,
                 ("numeric",), rng.values())
        clauses.append({"range": {"duration_s": rng}})
    for name, values in filters.fields.items():
        if kinds.get(name) != "keyword":
            keyword = sorted(n for n, k in kinds.items() if k == "keyword")
            raise ValueError(f"filters.fields.{name}: not a keyword field of the index "
                             f"(filterable: {', '.join(keyword) or 'none'})")
        clauses.append({"terms": {name: list(values)}})
    equality = ("keyword", "numeric", "date", "boolean")
    for name, value in filters.term.items():
        clauses.append(_equals(name, _checked(f"filters.term.{name}", name, kinds, equality, [value]), [value]))
    for name, values in filters.terms.items():
        kind = _checked(f"filters.terms.{name}", name, kinds, equality, values)
        clauses.append(_equals(name, kind, list(values)) if values else {"match_none": {}})
    for name, bounds in filters.range.items():
        given = bounds.given()
        kind = _checked(f"filters.range.{name}", name, kinds, ("numeric", "date"), given.values())
        clauses.append({"range": {name: {**given, "format": DATE_FORMAT} if kind == "date" else given}})
    return clauses
