"""`grdr bench` (loads the query layer and ingest lazily)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

from bench import defaults
from cli.console import console, out, print_json, user_errors
from grdr_plugin.pool import DEFAULT_BEAM


def _csv(values: tuple[int, ...]) -> str:
    return ",".join(map(str, values))


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{flag}: a comma-separated list of integers, e.g. 10,20,50") from None


def bench(dataset: Path = typer.Option(..., "--dataset", help="dataset folder (its test queries are the query set)"),
          model: Path = typer.Option(..., "--model", help="trained model folder"),
          scale: str = typer.Option(_csv(defaults.SCALES), "--scale",
                                    help="corpus sizes, comma-separated (e.g. 10000,100000)"),
          queries: int = typer.Option(defaults.QUERIES, "--queries", help="test queries per system and setting"),
          clients: str = typer.Option(_csv(defaults.CLIENTS), "--clients",
                                      help="concurrent clients for the throughput runs"),
          beams: str = typer.Option(_csv(defaults.BEAMS), "--beams",
                                    help="GRDR beam sizes for the recall/latency curve"),
          ef_search: str = typer.Option(_csv(defaults.EF_SEARCH), "--ef-search", help="HNSW ef_search values"),
          pools: str = typer.Option("", "--pools", help="extra recall budgets (at each --pool-beams "
                                                         "beam), comma-separated, e.g. 1000,3000"),
          pool_beams: str = typer.Option(str(DEFAULT_BEAM), "--pool-beams",
                                         help="beams the --pools budgets are measured at, comma-separated, "
                                              "e.g. 20,50,300"),
          report: Path = typer.Option(
              defaults.REPORT_DIR, "--report",
              help="folder for BENCHMARKS.md + plots, created if missing (relative to the working directory; "
                   "`--report docs` replaces the repository's published report)"),
          as_json: bool = typer.Option(False, "--json", help="one JSON object on the last line")) -> None:
    """GRDR vs exact dense vs HNSW on the local cluster: quality, latency, throughput, storage, RAM."""
    with user_errors():
        from bench.report import write_report
        from bench.suite import BenchConfig, run_bench

        cfg = BenchConfig(dataset=dataset, model=model, scales=_ints(scale, "--scale"), queries=queries,
                          clients=_ints(clients, "--clients"), beams=_ints(beams, "--beams"),
                          ef_search=_ints(ef_search, "--ef-search"), pools=_ints(pools, "--pools"),
                          pool_beams=_ints(pool_beams, "--pool-beams"))
        result = run_bench(cfg, log=lambda msg: console.print(f"[dim]•[/dim] {msg}", highlight=False))
        command = "grdr " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        out.print(f"report: {write_report(result, report, command)}")
    if as_json:
        print_json(result)


def register(app: typer.Typer) -> None:
    app.command()(bench)
