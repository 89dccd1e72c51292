"""`grdr loadtest` (loads the query layer lazily)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from bench import defaults
from cli.console import console, out, print_json, user_errors


def loadtest(url: str = typer.Option(defaults.LOAD_URL, "--url", help="base URL of `grdr serve`"),
             clients: int = typer.Option(defaults.LOAD_CLIENTS, "--clients",
                                         help="concurrent clients, one connection each"),
             duration: float = typer.Option(defaults.LOAD_DURATION_S, "--duration", help="seconds of load"),
             warmup: float = typer.Option(defaults.LOAD_WARMUP_S, "--warmup",
                                          help="seconds left out of the memory fit"),
             queries: Optional[Path] = typer.Option(None, "--queries", help="text file, one query a line"),
             dataset: Optional[Path] = typer.Option(None, "--dataset", help="dataset folder: its test queries"),
             k: int = typer.Option(defaults.LOAD_K, "-k", "--k", help="hits per query"),
             server_pid: Optional[int] = typer.Option(None, "--server-pid",
                                                      help="serving process for RSS (default: /health's pid)"),
             as_json: bool = typer.Option(False, "--json", help="one JSON object on the last line")) -> None:
    """N clients hammer POST /search for a fixed time: errors, latency, throughput, server RSS slope.

    Exits 1 when any request failed or the server's memory grew past the bound.
    """
    with user_errors():
        from bench.loadtest import LoadConfig, read_texts, run_load

        cfg = LoadConfig(url=url.rstrip("/"), texts=read_texts(queries, dataset), clients=clients,
                         duration_s=duration, warmup_s=warmup, k=k, server_pid=server_pid)
        console.print(f"{clients} clients x {duration:g} s against {cfg.url} ({len(cfg.texts)} query texts)")
        report = run_load(cfg)
    table = Table(title=f"load: {report.clients} clients, {report.duration_s:g} s", title_justify="left")
    table.add_column("metric")
    table.add_column("value")
    rows = [("requests", report.requests), ("errors", sum(report.errors.values())),
            ("throughput req/s", report.throughput_rps),
            *((name, f"{v:g}") for name, v in report.latency_ms.items())]
    mem = report.memory
    rows += [("server RSS MB before / start / end / max",
              f"{mem.before_mb} / {mem.start_mb} / {mem.end_mb} / {mem.max_mb}"),
             ("RSS slope MB/min", mem.slope_mb_per_min),
             ("RSS growth MB (bound)", f"{mem.growth_mb} (< {mem.bound_mb}: {'flat' if mem.flat else 'GROWING'})")] \
        if mem else [("server RSS", "not measured: the server is not local; pass --server-pid")]
    for name, value in rows:
        table.add_row(name, str(value))
    out.print(table)
    for kind, n in report.errors.items():
        out.print(f"{kind} x{n}: {report.error_examples[kind]}")
    if as_json:
        print_json(report.model_dump())
    if not report.passed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(loadtest)
