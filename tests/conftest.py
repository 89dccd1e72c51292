"""Fixtures shared by unit and integration tests. Keep this file small."""
from __future__ import annotations

from pathlib import Path

import pytest

# The datasets lie in ../shared beside the checkout (CI lays a copy there too).
SHARED = Path(__file__).resolve().parents[2] / "shared"
# A tiny random GRDR model shaped for the tvr-proxy data (512-d features, 4 frames).
TINY_SERVING = dict(views=4, codebook_size=8, feature_dim=512, frames=4, rerank_dim=32)


def shared_dataset(name: str) -> Path:
    path = SHARED / "datasets" / "tvr-proxy" / name
    if not path.is_dir():
        pytest.fail(f"dataset {path} is missing: ../shared must lie beside the checkout")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A full model folder (weights, tokenizer, three ONNX graphs) with random weights: plumbing, not quality."""
    from tests.support.tiny_model import build_tiny_model

    out = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(out, **TINY_SERVING)
    return out


@pytest.fixture(scope="session")
def tiny_clip_onnx(tmp_path_factory) -> Path:
    """A randomly initialised tiny CLIP vision tower (HF folder) exported by ingest.clip_export.

    projection_dim = the tiny model's feature_dim, so its frame embeddings feed the video encoder.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from ingest.clip_export import export_clip_vision

    root = tmp_path_factory.mktemp("tiny-clip")
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=TINY_SERVING["feature_dim"])
    CLIPVisionModelWithProjection(cfg).save_pretrained(root / "hf")
    return export_clip_vision(root / "hf", root / "image_encoder.onnx")
