"""The video-feature space a model reads, and whether a vector field of a user's index is in it.

The model folder records the feature dimension (`config.json` `feature_dim`) and, optionally, the
space its features are compared in (`feature_space.json`: `{"space_type": "..."}`). Without that
file the space is cosine: grdr trains on L2-normalised features (the datasets' and CLIP's), so only a
vector's direction carries meaning, and vectors read from a cosine field are normalised before encoding.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field, ValidationError

from grdr_plugin.model.artifacts import read_config

SpaceType = Literal["cosinesimil", "innerproduct", "l2", "l1", "linf", "hamming"]
DEFAULT_SPACE: SpaceType = "cosinesimil"
SPACE_FILE = "feature_space.json"


class FeatureSpace(BaseModel):
    dim: int = Field(gt=0, description="features per video vector (config.json feature_dim)")
    space_type: SpaceType = Field(DEFAULT_SPACE, description="the k-NN space its features are compared in")

    @property
    def normalise(self) -> bool:
        """Whether vectors are L2-normalised before encoding (a cosine space ignores their length)."""
        return self.space_type == "cosinesimil"


def read_feature_space(model_dir: Path | str) -> FeatureSpace:
    """The model's feature space: config.json's feature_dim, and feature_space.json's space when present."""
    dim = read_config(model_dir).feature_dim
    path = Path(model_dir) / SPACE_FILE
    if not path.is_file():
        return FeatureSpace(dim=dim)
    try:
        return FeatureSpace(dim=dim, space_type=json.loads(path.read_text())["space_type"])
    except (json.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
        raise ValueError(f"--model: {path} must be {{\"space_type\": one of {', '.join(SpaceType.__args__)}}} "
                         f"({type(exc).__name__})") from None


def declared_space(field: dict[str, Any]) -> Optional[str]:
    """The space a knn_vector mapping declares (top-level `space_type`, or its method's), or None."""
    return field.get("space_type") or (field.get("method") or {}).get("space_type")


def check_vector_field(name: str, field: Optional[dict[str, Any]], space: FeatureSpace, *, index: str) -> None:
    """Refuse a --features-field that is not a knn_vector of the model's dimension and space, naming the fix.

    A field that declares no space is taken to be in the model's (nothing says otherwise)."""
    fix = "name the vector field that holds your video encoder's features, or backfill from --dataset or --videos"
    if field is None:
        raise ValueError(f"--features-field: {index} has no field {name!r}; {fix}")
    kind = field.get("type", "object")
    if kind != "knn_vector":
        raise ValueError(f"--features-field: {name} is a {kind} field of {index}, not a knn_vector; {fix}")
    if field.get("dimension") != space.dim:
        raise ValueError(f"--features-field: {name} holds {field.get('dimension')}-d vectors in {index}, "
                         f"the model reads {space.dim}-d features; {fix}")
    declared = declared_space(field)
    if declared is not None and declared != space.space_type:
        raise ValueError(f"--features-field: {name} is in the {declared} space in {index}, the model's features "
                         f"are {space.space_type} ({SPACE_FILE} in the model folder, default {DEFAULT_SPACE}); "
                         f"features from another space mean something else to the model; {fix}")
