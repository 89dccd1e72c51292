"""Retokenize: larger codebooks for a trained model on its grown catalog, without training from scratch.

Kept from the old model, frozen: the text encoder, the dense reranker (so the vectors in the index stay valid) and
the view heads. New: codebooks of size C, k-means-initialised level by level on the views of EVERY catalog video
(seen and unseen: videos added after training have no captions but do have views), then short level phases and
the fit phase of grdr_plugin.model.train (codebooks, code-space text head and decoder refit on the train captions
under the new IDs). The result is a full model folder with a new fingerprint: its IDs mean nothing in an index of
the old model, so the catalog moves by a blue/green reindex (docs/RETOKENIZE.md).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from grdr_plugin.data import Dataset
from grdr_plugin.model.config import ModelConfig, TrainConfig, choose_codebook_size

# Level phases and fit phase of a retokenize: the view heads come trained and stay frozen, so one epoch per level
# settles the new codebooks and one refits the decoder (msrvtt in about a minute on 2 cores, docs/RETOKENIZE.md).
DEFAULT_EPOCHS_PER_LEVEL = 1
DEFAULT_EPOCHS_FIT = 1
_TRAIN = TrainConfig.model_fields  # training's defaults are retokenize's
CODES = "rq.codebooks"  # the one weight whose shape changes with C (the decoder reads codebooks as inputs)


class RetokenizeOptions(BaseModel):
    """The knobs of `grdr retokenize` (the other training knobs come from the old model's train_config.json)."""

    model_config = ConfigDict(extra="forbid")

    codebook_size: Optional[int] = Field(None, ge=2, description="new C; None: the corpus-size rule, at least "
                                                                  "the old C")
    epochs_per_level: int = Field(DEFAULT_EPOCHS_PER_LEVEL, ge=1)
    epochs_fit: int = Field(DEFAULT_EPOCHS_FIT, ge=1)
    seed: int = _TRAIN["seed"].default
    threads: int = Field(_TRAIN["threads"].default, ge=1)
    device: Literal["cpu", "cuda"] = _TRAIN["device"].default
    export_onnx: bool = True


def new_codebook_size(old: ModelConfig, videos: int, asked: Optional[int]) -> int:
    """C of the retokenized model: `asked`, else the corpus-size rule for the catalog, never below the old C
    (a smaller codebook crowds the IDs further)."""
    if asked is None:
        return max(old.codebook_size, choose_codebook_size(videos, old.views, old.levels))
    if asked < old.codebook_size:
        raise ValueError(f"--codebook-size {asked} is smaller than the model's C={old.codebook_size}: fewer codes "
                         f"crowd the IDs further; pass --codebook-size {old.codebook_size} or more")
    return asked


def _refuse_unusable(old: ModelConfig, ds: Dataset) -> None:
    """A catalog the old view heads cannot read, or without the captions the decoder refits on: name --dataset."""
    if not len(ds.train_queries()):
        raise ValueError(f"--dataset: {ds.root} has no train queries of seen videos; the decoder refits on them "
                         "(queries.jsonl with \"split\": \"train\", the captions the model was trained on)")
    if ds.features.shape[1] != old.feature_dim or ds.frames.shape[1] != old.frames:
        raise ValueError(f"--dataset: {ds.root} has {ds.features.shape[1]}-d features and {ds.frames.shape[1]} "
                         f"frames per video, the model reads {old.feature_dim}-d and {old.frames}; pass the catalog "
                         "the model was trained for (the same feature extractor)")
    if old.image_encoder is not None and ds.image_encoder is not None:
        why = old.image_encoder.mismatch(ds.image_encoder)
        if why:
            raise ValueError(f"--dataset: {why}")


def _train_config(old_dir: Path, opts: RetokenizeOptions) -> TrainConfig:
    """The old run's loss weights and routing (train_config.json, when there), with retokenize's phases."""
    path = old_dir / "train_config.json"
    base = TrainConfig.model_validate_json(path.read_text()) if path.is_file() else TrainConfig()
    return base.model_copy(update={"epochs_rerank": 0, "epochs_warmup": 0, "epochs_per_level": opts.epochs_per_level,
                                   "epochs_fit": opts.epochs_fit, "seed": opts.seed, "threads": opts.threads,
                                   "device": opts.device})


def _carry_caption_cache(old_dir: Path, out: Path) -> None:
    """The old model's cache of encoded train captions: made by the very text encoder kept here."""
    src = old_dir / "cache"
    if not src.is_dir():
        return
    dst = out / "cache"
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("text_*.npz"):
        if not (dst / f.name).exists():
            shutil.copy2(f, dst / f.name)


def _start_model(old_model, cfg: ModelConfig):
    """A GRDR of the new shape with every old weight but the codebooks; reranker and view heads frozen."""
    from grdr_plugin.model.nets import GRDR

    model = GRDR(cfg)
    missing, unexpected = model.load_state_dict(
        {k: v for k, v in old_model.state_dict().items() if k != CODES}, strict=False)
    assert missing == [CODES] and not unexpected, (missing, unexpected)  # only C changed shape
    for frozen in (model.reranker, model.views):
        frozen.requires_grad_(False)  # no gradient: the optimiser leaves them as they are
    return model


def retokenize(old_dir: str | Path, ds: Dataset, out: str | Path, opts: RetokenizeOptions,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the retokenized model folder to `out`; -> the summary train_summary.json holds, plus `before`
    (the old IDs' collision stats on the catalog) and `codebook_size` {"old", "new"}."""
    import torch

    from grdr_plugin.model.artifacts import load_model
    from grdr_plugin.model.train import Start, collision_stats, run_training

    old_dir, out = Path(old_dir), Path(out)
    if out.resolve() == old_dir.resolve():
        raise ValueError("--out: write the retokenized model to a new folder; the old one serves the current index "
                         "until the reindex is done")
    old_model, encoder, tokenizer, old = load_model(old_dir)
    _refuse_unusable(old, ds)
    c = new_codebook_size(old, ds.n_videos, opts.codebook_size)
    # serving: the old IDs' tuned beam and budget say nothing of the new ones (MODEL.md, "Serving defaults")
    untuned = old.model_dump(exclude={"serving", "serving_at_scale"})
    cfg = ModelConfig.model_validate({**untuned, "codebook_size": c, "fingerprint": ""})
    frames, pooled = torch.from_numpy(ds.frames), torch.from_numpy(ds.features)
    before = collision_stats(old_model.video_codes(frames, pooled).numpy(), old.codebook_size)
    out.mkdir(parents=True, exist_ok=True)
    _carry_caption_cache(old_dir, out)
    record = {"retokenized_from": {"fingerprint": old.fingerprint, "model": str(old_dir.resolve()),
                                   "codebook_size": old.codebook_size},
              "before": before, "codebook_size": {"old": old.codebook_size, "new": c}}
    start = Start(model=_start_model(old_model, cfg), encoder=encoder, tokenizer=tokenizer,
                  kmeans_videos=np.arange(ds.n_videos), record=record)
    log(f"retokenizing {old_dir} (C={old.codebook_size}) -> {out} (C={c}) on {ds.n_videos} catalog videos")
    return run_training(ds, out, cfg, _train_config(old_dir, opts), log=log, export_onnx=opts.export_onnx,
                        start=start)
