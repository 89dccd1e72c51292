"""`grdr search` and `grdr serve` (they load the query layer lazily)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from cli.console import MAX_POOL_HELP, RECALL_LEVEL_HELP, console, out, print_json, user_errors

RANGE_FILTERS = ("duration_min", "duration_max")


def parse_filters(items: list[str]) -> dict[str, Any]:
    """`--filter KEY=VALUE` flags -> the filters of `Searcher.search` (query.filters.SearchFilters): `tags=...`
    and any keyword field (`genre=news`) collect their values (any of them matches), `duration_min`/`_max`
    take seconds."""
    filters: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"--filter {item!r}: expected KEY=VALUE, e.g. tags=food, duration_max=60 or genre=news")
        if key in RANGE_FILTERS:
            try:
                filters[key] = float(value)
            except ValueError:
                raise ValueError(f"--filter {key}: {value!r} is not a number of seconds") from None
        elif key == "tags":
            filters.setdefault("tags", []).append(value)
        else:
            filters.setdefault("fields", {}).setdefault(key.removeprefix("fields."), []).append(value)
    return filters


def _json_filters(text: Optional[str]) -> dict[str, Any]:
    """`--filter-json`: a JSON object of filters (query.filters.SearchFilters validates its keys and values)."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--filter-json: not JSON ({exc.msg}, character {exc.pos})") from None
    if not isinstance(value, dict):
        raise ValueError("--filter-json: expected a JSON object, e.g. {\"term\": {\"channel\": \"news\"}}")
    return value


def search(text: str = typer.Argument(..., metavar="TEXT", help="the query"),
           model: Path = typer.Option(..., "--model", help="trained model folder"),
           index: str = typer.Option(..., "--index", help="catalog alias"),
           k: int = typer.Option(10, "-k", "--k", min=1, help="number of hits (bounded as in the HTTP API)"),
           hybrid: str = typer.Option("off", "--hybrid",
                                      help="BM25 over title/description/tags: off, union (its top documents join "
                                           "the recalled pool) or rrf (rank fusion: scores are RRF scores)"),
           filters: list[str] = typer.Option(
               [], "--filter", help="KEY=VALUE, repeatable: tags=food, duration_min=5, duration_max=60, or any "
                                    "keyword field, e.g. genre=news (values of one key: any of them)"),
           filter_json: Optional[str] = typer.Option(
               None, "--filter-json", help='filters as JSON, e.g. {"term": {"channel": "news"}, "range": '
                                           '{"published": {"gte": "2024-03-01"}}} (term, terms, range on any '
                                           'keyword, numeric, date or boolean field); merged over --filter'),
           source: list[str] = typer.Option([], "--source", help="a _source field each hit carries, repeatable"),
           text_fields: list[str] = typer.Option(
               [], "--text-field", help="a field BM25 reads with --hybrid (name or name^boost), repeatable; "
                                        "default: a catalog's title^2, description, tags, or an attached "
                                        "index's text fields"),
           beam: Optional[int] = typer.Option(None, "--beam", min=1, help="beam size of the constrained decoder "
                                                                         "(default: the model's)"),
           max_pool: Optional[int] = typer.Option(None, "--max-pool", min=1, help=MAX_POOL_HELP),
           recall_level: Optional[int] = typer.Option(None, "--recall-level", min=1, help=RECALL_LEVEL_HELP),
           as_json: bool = typer.Option(False, "--json", help="one JSON object on the last line")) -> None:
    """Search a catalog: generative recall + kNN rerank in one OpenSearch request.

    Each call loads the model and connects first (about a second, shown on stderr); `grdr serve` or the
    Python API pay that once for many queries.
    """
    t0 = time.perf_counter()
    with user_errors():
        from query.api import MAX_API_K
        from query.searcher import Searcher

        if k > MAX_API_K:
            raise typer.BadParameter(f"at most {MAX_API_K}, as the HTTP API", param_hint="-k/--k")
        wanted = {**parse_filters(filters), **_json_filters(filter_json)}
        searcher = Searcher(model, index, beam_size=beam, max_pool=max_pool, recall_level=recall_level,
                            text_fields=tuple(text_fields) or None).connect()
        result = searcher.search(text, k=k, filters=wanted or None, hybrid=hybrid, source=source or None)
    console.print(f"{time.perf_counter() - t0:.1f} s in all, {result.timings_ms['total']:.0f} ms of it searching: "
                  "each `grdr search` loads the model first; `grdr serve` and the Python API load it once",
                  style="dim", highlight=False)
    score_kind = "rrf" if hybrid == "rrf" else "knn_score"
    if as_json:
        print_json({**result.model_dump(include={"hits", "timings_ms", "recalled_ids", "pool_size"}),
                    "score_kind": score_kind})
        return
    table = Table(title=f"{text!r}  ({result.timings_ms['total']:.1f} ms)")
    for col in ("#", "video_id", "rrf score" if score_kind == "rrf" else "knn score", "matched_id", "title"):
        table.add_column(col)
    if source:
        table.add_column("source")
    for i, h in enumerate(result.hits, 1):
        table.add_row(str(i), h.video_id, f"{h.score:.4f}", h.matched_id or "", (h.title or "")[:60],
                      *([json.dumps(h.source, ensure_ascii=False)] if source else []))
    out.print(table)
    out.print(" ".join(f"{name}={v:.1f}ms" for name, v in result.timings_ms.items())
              + f"  recalled_ids={result.recalled_ids} pool_size={result.pool_size}")


def serve(model: Path = typer.Option(..., "--model", help="trained model folder"),
          index: str = typer.Option(..., "--index", help="catalog alias"),
          host: str = typer.Option("127.0.0.1", help="bind address"),
          port: int = typer.Option(8080, help="port"),
          beam: Optional[int] = typer.Option(None, "--beam", min=1, help="default beam of the searches that name "
                                                                         "none (default: the model's)"),
          max_pool: Optional[int] = typer.Option(None, "--max-pool", min=1, help=MAX_POOL_HELP),
          recall_level: Optional[int] = typer.Option(None, "--recall-level", min=1, help=RECALL_LEVEL_HELP),
          concurrency: int = typer.Option(4, "--concurrency", min=1,
                                          help="searches run at once (CPU-bound: about the number of cores)"),
          text_fields: list[str] = typer.Option(
              [], "--text-field", help="a field BM25 reads in hybrid searches (name or name^boost), repeatable"),
          image_encoder: Optional[Path] = typer.Option(
              None, "--image-encoder", help="ONNX image encoder or HF CLIP folder for POST /videos lines that name "
                                            "video files (default: the model's onnx/image_encoder.onnx)")) -> None:
    """The search page at /, the HTTP API (POST /search, GET /ids/{id}/videos, /health, /metrics, OpenAPI at
    /docs); POST /videos and GET /jobs/{id} ingest through the Celery workers. Refuses an index of another model."""
    with user_errors():
        import uvicorn

        from cli.ingest_commands import image_encoder_path
        from ingest.http import ingest_router
        from query.api import create_app
        from query.searcher import Searcher

        # connected before serving: a wrong alias or another model's index stops the command here
        searcher = Searcher(model, index, beam_size=beam, max_pool=max_pool, recall_level=recall_level,
                            text_fields=tuple(text_fields) or None).connect()
        ingest = ingest_router(model, index, image_encoder=image_encoder_path(image_encoder, model))
        app = create_app(searcher, max_concurrency=concurrency, routers=[ingest])
    # access_log off: the app logs each request itself, as one JSON line (query.json_log)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


def register(app: typer.Typer) -> None:
    app.command()(search)
    app.command()(serve)
