"""`grdr ingest`: queue batches for the Celery ingest workers (ingest/), optionally wait for them.

Celery and ingest/ are imported inside the command only, so other commands never load them.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from cli.console import console, out, print_json, user_errors
from cli.runs import report, wait_with_progress
from grdr_plugin.settings import get_settings


def _default_encoder(model: Path) -> Path:
    return model / "onnx" / "image_encoder.onnx"


def image_encoder_path(given: Optional[Path], model: Path) -> Optional[str]:
    """An ONNX file as is; a Hugging Face CLIP folder exported once to ONNX (needs torch here, never in workers)."""
    if given is None:
        default = _default_encoder(model)
        return str(default.resolve()) if default.is_file() else None
    from ingest.clip_export import onnx_encoder

    return str(onnx_encoder(given, get_settings().home / "image-encoders", console.print))


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        dataset: Optional[Path] = typer.Option(None, "--dataset", help="dataset folder (catalog.jsonl + features.npy)"),
        videos: Optional[str] = typer.Option(None, "--videos", help="a video file, a quoted glob, or a .jsonl catalog"),
        model: Path = typer.Option(..., "--model", help="trained model folder"),
        index: str = typer.Option(..., "--index", help="alias name of the catalog index"),
        wait: bool = typer.Option(False, "--wait", help="show progress and print the summary"),
        as_json: bool = typer.Option(False, "--json",
                                     help="with --wait: the summary as one JSON object on the last line"),
        reindex: bool = typer.Option(False, "--reindex",
                                     help="build a new versioned index and swap the alias when done"),
        shards: Optional[int] = typer.Option(None, "--shards", min=1,
                                             help="primary shards of a new index (--reindex: default the current's)"),
        replicas: Optional[int] = typer.Option(None, "--replicas", min=0,
                                               help="replicas of a new index (--reindex: default the current's)"),
        batch_size: Optional[int] = typer.Option(
            None, "--batch-size", min=1,
            help="videos per task (default GRDR_INGEST_BATCH_SIZE; GRDR_INGEST_VIDEO_BATCH_SIZE for video files)"),
        split: Optional[str] = typer.Option(None, "--split",
                                            help="--dataset only: ingest only this split (e.g. unseen)"),
        image_encoder: Optional[Path] = typer.Option(None, "--image-encoder",
                                                     help="ONNX image encoder or HF CLIP folder (video files)"),
    ) -> None:
        """Turn videos into semantic IDs + rerank vectors in the index, via the Celery workers.

        Refuses before queuing anything when no worker consumes the queue, or when video files come without an
        image encoder. Exit code 3 when any record failed (the summary is printed first).
        """
        with user_errors():
            from ingest.config import get_ingest_settings
            from ingest.submit import enqueue, make_plan, refuse_videos_without_encoder, require_worker
            from ingest.target import prepare_target

            settings, ingest_settings = get_settings(), get_ingest_settings()
            default_size = ingest_settings.batch_size if dataset is not None else ingest_settings.video_batch_size
            size = batch_size or default_size
            plan = make_plan(dataset=dataset, videos=videos, batch_size=size, split=split)
            encoder = image_encoder_path(image_encoder, model) if videos is not None else None
            if videos is not None:
                from ingest.image_encoder import check_trained_with

                check_trained_with(model, encoder)
                if encoder is None:
                    refuse_videos_without_encoder(plan, _default_encoder(model))
            require_worker()  # before the index is created or anything queued
            target = prepare_target(settings.opensearch_client(), index, model, reindex=reindex,
                                    shards=shards, replicas=replicas)
            t0 = time.perf_counter()
            sub = enqueue(plan, target, image_encoder=encoder, reindex=reindex)
            if not wait:
                info = {"queued_batches": len(sub.results), "videos": plan.videos, "index": target.index,
                        "alias": target.alias, "group_id": sub.group_id}
                print_json(info) if as_json else out.print(
                    f"queued {plan.videos} videos in {len(sub.results)} batches for {target.index} "
                    f"(group {sub.group_id})")
                return
            summary, extra = wait_with_progress(sub, total=plan.videos, unit="video", desc=f"ingest -> {target.index}")
            seconds = time.perf_counter() - t0
        report(summary, extra, seconds, as_json=as_json, errors_index=ingest_settings.errors_index,
               done=f"indexed {summary.indexed}, updated {summary.updated}, failed {summary.failed} "
                    f"into {target.index} in {seconds:.1f} s",
               not_switched=f"alias {index} not swapped")
