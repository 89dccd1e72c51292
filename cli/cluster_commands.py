"""`grdr cluster start|stop|status`: the local OpenSearch (+ k-NN) node and Redis, on loopback, no Docker."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console
from rich.table import Table

from grdr_plugin.cluster import opensearch_node, procs, redis_server
from grdr_plugin.cluster.errors import ClusterError, tail
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.settings import get_settings

app = typer.Typer(help="Run a local single-node OpenSearch (with k-NN) and Redis on 127.0.0.1 (no Docker).",
                  no_args_is_help=True)
out = Console()
err = Console(stderr=True)


@contextmanager
def _friendly_errors() -> Iterator[None]:
    """What went wrong, the node log's tail and what to do; exit code 1, never a stack trace."""
    try:
        yield
    except ClusterError as exc:
        err.print(f"[red]error:[/red] {exc.message}", highlight=False)
        lines = tail(exc.log)
        if lines:
            err.rule(f"last {len(lines)} lines of {exc.log}")
            for line in lines:
                err.print(line, markup=False, highlight=False)
            err.rule()
        if exc.hint:
            err.print(f"[yellow]hint:[/yellow] {exc.hint}", highlight=False)
        raise typer.Exit(1) from None
    except (OSError, ValueError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None


def _step(msg: str) -> None:
    out.print(f"[dim]•[/dim] {msg}", highlight=False)


@app.command()
def start(rebuild: bool = typer.Option(False, "--rebuild",
                                       help="reassemble the OpenSearch home from the download cache")) -> None:
    """Start OpenSearch and Redis unless they already run; wait for cluster health yellow/green."""
    settings = get_settings()
    paths = ClusterPaths.from_settings(settings)
    t0 = time.monotonic()
    with _friendly_errors(), procs.exclusive(paths.lock):
        r = redis_server.start(settings, paths)
        state = "already running" if r.already_running else f"started in {r.seconds:.1f} s"
        out.print(f"[green]✓[/green] Redis {r.version} on 127.0.0.1:{settings.redis_port} ({state})")

        n = opensearch_node.start(settings, paths, _step, rebuild=rebuild)
        state = "already running" if n.already_running else f"started in {n.seconds:.1f} s"
        out.print(f"[green]✓[/green] OpenSearch {n.version} on {opensearch_node.base_url(settings)}: "
                  f"health {n.health} ({state})")
    out.print(f"cluster ready in {time.monotonic() - t0:.1f} s (data in {paths.home})")


@app.command()
def stop() -> None:
    """Stop OpenSearch and Redis gracefully (SIGTERM, wait); their data stays."""
    settings = get_settings()
    paths = ClusterPaths.from_settings(settings)
    with _friendly_errors(), procs.exclusive(paths.lock):
        for name, fn in (("OpenSearch", opensearch_node.stop), ("Redis", redis_server.stop)):
            t0 = time.monotonic()
            res = fn(settings, paths)
            if res is None:
                out.print(f"[dim]-[/dim] {name} was not running")
            else:
                pid, graceful = res
                how = "stopped" if graceful else "[yellow]killed (did not stop on SIGTERM)[/yellow]"
                out.print(f"[green]✓[/green] {name} (pid {pid}) {how} in {time.monotonic() - t0:.1f} s")


@app.command()
def status() -> None:
    """OpenSearch version, plugins and health, and Redis; exit code 1 when something is down."""
    settings = get_settings()
    paths = ClusterPaths.from_settings(settings)
    with _friendly_errors():
        node = opensearch_node.status(settings, paths)
        redis_version = redis_server.ping(settings.redis_port)

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    url = opensearch_node.base_url(settings)
    if node.up:
        colour = {"green": "green", "yellow": "yellow"}.get(node.health, "red")
        table.add_row("OpenSearch", f"[green]up[/green] {node.version} at {url}"
                      + (f" (pid {node.pid})" if node.pid else ""))
        table.add_row("health", f"[{colour}]{node.health}[/{colour}] ({node.nodes} node)")
        table.add_row("plugins", ", ".join(node.plugins) or "[yellow]none[/yellow]")
    elif node.pid:
        table.add_row("OpenSearch", f"[yellow]starting[/yellow] (pid {node.pid}; nothing answers at {url} yet)")
    else:
        table.add_row("OpenSearch", f"[red]down[/red] (nothing answers at {url})")
    table.add_row("Redis", f"[green]up[/green] {redis_version} at 127.0.0.1:{settings.redis_port} (PONG)"
                  if redis_version else f"[red]down[/red] (no PONG at 127.0.0.1:{settings.redis_port})")
    out.print(table)
    healthy = node.up and node.health in ("green", "yellow") and redis_version is not None
    if not healthy:
        err.print("[yellow]hint:[/yellow] `grdr cluster start` starts what is down")
        raise typer.Exit(1)
