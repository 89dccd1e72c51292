"""`grdr ingest`: queue batches for the Celery ingest workers (ingest/), optionally wait for them.

Celery and ingest/ are imported inside the command only, so other commands never load them.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from cli.console import console, print_json, user_errors
from grdr_plugin.metrics import per_second
from grdr_plugin.settings import get_settings


def _image_encoder_path(given: Optional[Path], model: Path) -> Optional[str]:
    """An ONNX file as is; a Hugging Face CLIP folder exported once to ONNX (needs torch here, never in workers)."""
    if given is None:
        default = model / "onnx" / "image_encoder.onnx"
        return str(default.resolve()) if default.is_file() else None
    if given.is_file():
        return str(given.resolve())
    if (given / "config.json").is_file():
        from ingest.clip_export import export_clip_vision

        out = (get_settings().home / "image-encoders" / f"{given.resolve().name}.onnx").resolve()
        if not out.is_file():
            console.print(f"exporting {given} to {out} (once)")
            export_clip_vision(given, out)
        return str(out)
    raise FileNotFoundError(f"--image-encoder: {given} is neither an .onnx file nor a Hugging Face model folder")


def _enqueue_or_explain(send):
    from kombu.exceptions import OperationalError

    try:
        return send()
    except OperationalError as exc:
        raise LookupError(f"cannot reach the Celery broker at GRDR_BROKER_URL ({exc}); "
                          "start the local one with `grdr cluster start`") from None


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
        batch_size: Optional[int] = typer.Option(
            None, "--batch-size", min=1,
            help="videos per task (default GRDR_INGEST_BATCH_SIZE; GRDR_INGEST_VIDEO_BATCH_SIZE for video files)"),
        split: Optional[str] = typer.Option(None, "--split",
                                            help="--dataset only: ingest only this split (e.g. unseen)"),
        image_encoder: Optional[Path] = typer.Option(None, "--image-encoder",
                                                     help="ONNX image encoder or HF CLIP folder (video files)"),
    ) -> None:
        """Turn videos into semantic IDs + rerank vectors in the index, via the Celery workers."""
        with user_errors():
            from ingest.config import get_ingest_settings
            from ingest.submit import enqueue, make_plan
            from ingest.submit import wait as wait_for
            from ingest.target import prepare_target

            settings, ingest_settings = get_settings(), get_ingest_settings()
            default_size = ingest_settings.batch_size if dataset is not None else ingest_settings.video_batch_size
            size = batch_size or default_size
            plan = make_plan(dataset=dataset, videos=videos, batch_size=size, split=split)
            encoder = _image_encoder_path(image_encoder, model) if videos is not None else None
            target = prepare_target(settings.opensearch_client(), index, model, reindex=reindex)
            t0 = time.perf_counter()
            sub = _enqueue_or_explain(lambda: enqueue(plan, target, image_encoder=encoder, reindex=reindex))
            if not wait:
                info = {"queued_batches": len(sub.results), "videos": plan.videos, "index": target.index,
                        "alias": target.alias, "group_id": sub.group_id}
                print_json(info) if as_json else console.print(
                    f"queued {plan.videos} videos in {len(sub.results)} batches for {target.index} "
                    f"(group {sub.group_id}); run `celery -A ingest worker` if none is running")
                return
            from tqdm import tqdm

            with tqdm(total=plan.videos, unit="video", desc=f"ingest -> {target.index}") as bar:
                summary, extra = wait_for(sub, on_progress=bar.update)
            seconds = time.perf_counter() - t0
        out = {**summary.public(), **extra, "seconds": round(seconds, 3),
               "videos_per_s": per_second(summary.done, seconds) if seconds > 0 else None}
        if as_json:
            print_json(out)
            return
        console.print(f"indexed {summary.indexed}, updated {summary.updated}, failed {summary.failed} "
                      f"into {target.index} in {seconds:.1f} s")
        for err in summary.errors[:20]:
            console.print(f"  [red]{err.video_id}[/red]: {err.reason}")
        if summary.failed > 20:
            console.print("  ... all failures are in the errors index (GRDR_INGEST_ERRORS_INDEX)")
        if extra.get("swapped") is False:
            console.print(f"[red]alias {index} not swapped:[/red] {extra.get('swap_error')}")
            raise typer.Exit(1)
