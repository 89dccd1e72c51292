"""`grdr template`, `grdr attach`, `grdr detach`, `grdr backfill`: grdr on an index the user already has.

Thin wrappers over grdr_plugin.attach (the mapping), ingest.backfill_submit (the batches) and
ingest.refit (`--reindex`); Celery and ingest/ are imported inside the commands only.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from cli.console import console, out, print_json, user_errors
from cli.ingest_commands import image_encoder_path
from cli.runs import report, wait_with_progress
from grdr_plugin.index import COMPONENT_TEMPLATE
from grdr_plugin.settings import get_settings

INDEX_HELP = "your index, or the alias your clients read"


def template(model: Path = typer.Option(..., "--model", help="trained model folder"),
             name: str = typer.Option(COMPONENT_TEMPLATE, "--name", help="component template name"),
             knn_enabled: bool = typer.Option(False, "--knn-enabled",
                                              help="for index templates with index.knn: true (grdr_vec gets a "
                                                   "lucene HNSW method, which every node can build)"),
             as_json: bool = typer.Option(False, "--json", help="the template's body as one JSON object")) -> None:
    """Create (or replace) the component template holding grdr's fields, for your own index templates."""
    with user_errors():
        from grdr_plugin.index import IndexSpec, put_component_template

        spec = IndexSpec.from_model_dir(model)
        body = put_component_template(get_settings().opensearch_client(), spec, name, knn_enabled=knn_enabled)
    if as_json:
        print_json({"name": name, **body})
        return
    out.print(f"component template {name}: grdr_ids, grdr_prefixes, grdr_vec[{spec.rerank_dim}] of model "
              f"{spec.fingerprint[:12]}; add \"composed_of\": [\"{name}\"] to your index templates, then fill new "
              f"indices with `grdr backfill`")


def attach(index: str = typer.Option(..., "--index", help=INDEX_HELP),
           model: Path = typer.Option(..., "--model", help="trained model folder"),
           as_json: bool = typer.Option(False, "--json", help="one JSON object on the last line")) -> None:
    """Add grdr's fields to your index's live mapping (no reindex) and record the model.

    Your fields, settings and aliases stay as they are; a field that conflicts is refused, named. Running it
    again changes nothing."""
    with user_errors():
        from grdr_plugin.attach import attach as attach_index
        from grdr_plugin.index import IndexSpec

        report = attach_index(get_settings().opensearch_client(), index, IndexSpec.from_model_dir(model))
    if as_json:
        print_json(report.public())
        return
    fields = ", ".join(report.fields.names())
    if not report.changed:
        out.print(f"{index} is attached already ({fields}); nothing changed")
    for name in report.changed:
        added = report.added.get(name)
        out.print(f"{name}: " + (f"added {', '.join(added)}" if added else "fields present") +
                  ", model recorded in _meta.grdr")
    out.print(f"next: grdr backfill --index {index} --model {model} --features-field FIELD (or --dataset DIR, "
              "--videos FILES) --wait")


def detach(index: str = typer.Option(..., "--index", help=INDEX_HELP),
           as_json: bool = typer.Option(False, "--json", help="one JSON object on the last line")) -> None:
    """Stop serving grdr on your index: mark it detached and drop its published IDs.

    OpenSearch cannot remove a field from a mapping: grdr's fields and their values stay (they cost disk
    only). Query processes refuse the index from their next start; `grdr attach` serves it again."""
    with user_errors():
        from grdr_plugin.attach import detach as detach_index

        report = detach_index(get_settings().opensearch_client(), index)
    if as_json:
        print_json(report.public())
        return
    out.print(f"detached {', '.join(report.detached)}" if report.detached else f"{index} is not attached; nothing "
              "changed")
    for name, kept in report.fields_kept.items():
        if kept:
            out.print(f"{name} keeps fields {', '.join(kept)}: OpenSearch cannot remove a field from a mapping")


def _confirm(lines: list[str], yes: bool) -> None:
    """Say what a refit will do; go ahead on --yes or an interactive yes, else stop with nothing done."""
    out.print("grdr backfill --reindex will:")
    for line in lines:
        out.print(f"  - {line}")
    if yes:
        return
    if not sys.stdin.isatty():
        raise ValueError("--reindex: nothing done; run it again with --yes to go ahead")
    if not typer.confirm("go ahead?"):
        raise ValueError("--reindex: nothing done")


def backfill(
    index: str = typer.Option(..., "--index", help=INDEX_HELP),
    model: Path = typer.Option(..., "--model", help="trained model folder"),
    features_field: Optional[str] = typer.Option(
        None, "--features-field", help="a knn_vector field of your documents holding their video features"),
    dataset: Optional[Path] = typer.Option(None, "--dataset",
                                           help="dataset folder (catalog video_id = document _id)"),
    videos: Optional[str] = typer.Option(None, "--videos", help="a video file, a quoted glob, or a .jsonl catalog"),
    missing: bool = typer.Option(False, "--missing",
                                 help="--features-field only: just the documents without grdr's fields"),
    wait: bool = typer.Option(False, "--wait", help="show progress and print the summary"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on the last line"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="documents per task"),
    split: Optional[str] = typer.Option(None, "--split", help="--dataset only: only this split"),
    image_encoder: Optional[Path] = typer.Option(None, "--image-encoder",
                                                 help="ONNX image encoder or HF CLIP folder (video files)"),
    reindex: bool = typer.Option(False, "--reindex",
                                 help="refit for another model without moving your clients (says what it will "
                                      "do first)"),
    yes: bool = typer.Option(False, "--yes", help="with --reindex: go ahead without asking"),
) -> None:
    """Fill grdr's fields of your documents by partial update (every field of yours stays), via the Celery workers.

    Features come from a vector field of the documents, a dataset folder, or video files. Exit code 3 when any
    document failed (the summary names each)."""
    with user_errors():
        from ingest.backfill_submit import enqueue_backfill, plan_documents, prepare_backfill
        from ingest.config import get_ingest_settings
        from ingest.refit import describe, finish_refit, plan_refit
        from ingest.submit import make_plan, require_worker

        if sum(x is not None for x in (features_field, dataset, videos)) != 1:
            raise ValueError("give exactly one of --features-field FIELD, --dataset DIR or --videos FILE_OR_GLOB")
        if missing and features_field is None:
            raise ValueError("--missing finds the documents without grdr's fields, whose features come from "
                             "--features-field; a --dataset or --videos backfill writes every record it names")
        client, settings = get_settings().opensearch_client(), get_ingest_settings()
        refit = plan_refit(client, index, model) if reindex else None
        if refit is not None:
            _confirm(describe(refit), yes)
        require_worker()  # before anything is created or queued
        encoder = image_encoder_path(image_encoder, model) if videos is not None else None
        if refit is not None:
            _start(client, refit)
        name = refit.target_index if refit is not None else index
        target = prepare_backfill(client, name, model, features_field=features_field, refit=refit)
        if features_field is not None:
            batches = plan_documents(client, target, missing=missing or refit is not None,
                                     batch_size=batch_size or settings.batch_size)
        else:
            size = batch_size or (settings.batch_size if dataset is not None else settings.video_batch_size)
            batches = make_plan(dataset=dataset, videos=videos, batch_size=size, split=split).batches
        documents = sum(n for _, n in batches)
        t0 = time.perf_counter()
        if not batches and refit is not None:  # nothing to fill: switch at once
            finish_refit(client, refit)
        sub = enqueue_backfill(batches, target, image_encoder=encoder, refit=refit) if batches else None
        if not wait or sub is None:
            info = {"queued_batches": len(batches), "videos": documents, "index": target.index,
                    "alias": target.alias, "group_id": sub.group_id if sub else None}
            print_json(info) if as_json else out.print(
                f"queued {documents} documents in {len(batches)} batches for {target.alias}"
                + (f" (group {sub.group_id})" if sub else ": nothing to backfill"))
            return
        summary, extra = wait_with_progress(sub, total=documents, unit="doc", desc=f"backfill -> {target.alias}")
        seconds = time.perf_counter() - t0
    report(summary, extra, seconds, as_json=as_json, errors_index=settings.errors_index,
           done=f"filled {summary.indexed}, refilled {summary.updated}, failed {summary.failed} "
                f"in {target.alias} in {seconds:.1f} s",
           not_switched=f"{index} not switched to the new model")


def _start(client, refit) -> None:
    """Make the refit's new fields or index copy, with a progress bar for the copy."""
    from tqdm import tqdm

    from ingest.refit import start_refit

    if refit.kind == "index":
        start_refit(client, refit)
        return
    console.print(f"copying {refit.source_index} into {refit.target_index}")
    with tqdm(unit="doc", desc=f"copy -> {refit.target_index}", file=sys.stderr) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        start_refit(client, refit, progress)


def register(app: typer.Typer) -> None:
    app.command()(template)
    app.command()(attach)
    app.command()(detach)
    app.command()(backfill)
