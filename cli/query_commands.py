"""`grdr search` and `grdr serve` (they load the query layer lazily)."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.console import console, print_json, user_errors
from grdr_plugin.pool import DEFAULT_BEAM, DEFAULT_MAX_POOL


def search(text: str = typer.Argument(..., help="the query"),
           model: Path = typer.Option(..., "--model", help="trained model folder"),
           index: str = typer.Option(..., "--index", help="catalog alias"),
           k: int = typer.Option(10, "-k", help="number of hits"),
           hybrid: str = typer.Option("off", "--hybrid",
                                      help="BM25 over title/description/tags: off, union (its top documents join "
                                           "the recalled pool) or rrf (rank fusion)"),
           beam: int = typer.Option(DEFAULT_BEAM, "--beam", help="beam size of the constrained decoder"),
           max_pool: int = typer.Option(DEFAULT_MAX_POOL, "--max-pool", help="cap on recalled videos"),
           as_json: bool = typer.Option(False, "--json", help="one JSON object on the last line")) -> None:
    """Search a catalog: generative recall + kNN rerank in one OpenSearch request."""
    with user_errors():
        from query.searcher import Searcher

        searcher = Searcher(model, index, beam_size=beam, max_pool=max_pool).connect()
        result = searcher.search(text, k=k, hybrid=hybrid)
    if as_json:
        print_json(result.model_dump(include={"hits", "timings_ms"}))
        return
    table = Table(title=f"{text!r}  ({result.timings_ms['total']:.1f} ms)")
    for col in ("#", "video_id", "score", "matched_id", "title"):
        table.add_column(col)
    for i, h in enumerate(result.hits, 1):
        table.add_row(str(i), h.video_id, f"{h.score:.4f}", h.matched_id or "", (h.title or "")[:60])
    console.print(table)
    console.print(" ".join(f"{k}={v:.1f}ms" for k, v in result.timings_ms.items()))


def serve(model: Path = typer.Option(..., "--model", help="trained model folder"),
          index: str = typer.Option(..., "--index", help="catalog alias"),
          host: str = typer.Option("127.0.0.1", help="bind address"),
          port: int = typer.Option(8080, help="port"),
          beam: int = typer.Option(DEFAULT_BEAM, "--beam"),
          max_pool: int = typer.Option(DEFAULT_MAX_POOL, "--max-pool"),
          concurrency: int = typer.Option(4, "--concurrency", min=1,
                                          help="searches run at once (CPU-bound: about the number of cores)")) -> None:
    """The HTTP query API: POST /search, GET /health, OpenAPI at /docs. Refuses an index of another model."""
    with user_errors():
        import uvicorn

        from query.api import create_app
        from query.searcher import Searcher

        # connected before serving: a wrong alias or another model's index stops the command here
        searcher = Searcher(model, index, beam_size=beam, max_pool=max_pool).connect()
        app = create_app(searcher, max_concurrency=concurrency)
    uvicorn.run(app, host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    app.command()(search)
    app.command()(serve)
