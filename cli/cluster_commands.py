"""`grdr cluster start|stop|status`: the local OpenSearch (+ k-NN) node and Redis, on loopback, no Docker."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Optional

import typer
from rich.table import Table
from rich.text import Text

from cli.console import EXIT_ERROR, out, print_json, user_errors
from cli.console import console as err
from grdr_plugin.cluster import local_cluster, procs, redis_server, remote
from grdr_plugin.cluster.errors import ClusterError, tail
from grdr_plugin.cluster.paths import ClusterPaths
from grdr_plugin.index import validate_name
from grdr_plugin.settings import get_settings

app = typer.Typer(help="Run a local OpenSearch (with k-NN; --nodes N) and Redis on 127.0.0.1 (no Docker); "
                       "`status` checks whichever cluster the settings point at.",
                  no_args_is_help=True, rich_markup_mode=None)


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
    err.print(f"[dim]•[/dim] {msg}", highlight=False)


@app.command()
def start(rebuild: bool = typer.Option(False, "--rebuild",
                                       help="reassemble the OpenSearch home from the download cache"),
          nodes: Optional[int] = typer.Option(None, "--nodes", min=1, max=9,
                                              help="OpenSearch nodes on loopback (default GRDR_CLUSTER_NODES, 1); "
                                                   "fixed for a home once it holds data")) -> None:
    """Start OpenSearch and Redis unless they already run; wait for cluster health yellow/green."""
    settings = get_settings()
    paths = ClusterPaths.from_settings(settings)
    count = nodes or settings.cluster_nodes
    t0 = time.monotonic()
    with _friendly_errors(), procs.exclusive(paths.lock):
        local_cluster.check_node_count(paths, count)  # before Redis starts: a refused start changes nothing
        r = redis_server.start(settings, paths)
        state = "already running" if r.already_running else f"started in {r.seconds:.1f} s"
        out.print(f"[green]✓[/green] Redis {r.version} on 127.0.0.1:{settings.redis_port} ({state})", markup=True)

        n = local_cluster.start(settings, paths, count, _step, rebuild=rebuild)
        state = "already running" if n.already_running else f"started in {n.seconds:.1f} s"
        where = local_cluster.node_url(settings, 0) + (f" (+{count - 1} nodes on the next ports)" if count > 1 else "")
        out.print(f"[green]✓[/green] OpenSearch {n.version} on {where}: health {n.health} ({state})", markup=True)
    out.print(f"cluster ready in {time.monotonic() - t0:.1f} s (data in {paths.home})")


@app.command()
def stop() -> None:
    """Stop OpenSearch (every node of this home) and Redis gracefully (SIGTERM, wait); their data stays."""
    settings = get_settings()
    paths = ClusterPaths.from_settings(settings)
    with _friendly_errors(), procs.exclusive(paths.lock):
        stops = local_cluster.stop(settings, paths)
        for node in stops:
            _report_stop("OpenSearch" if len(stops) == 1 else f"OpenSearch {node.name}", node.pid, node.graceful,
                         node.seconds)
        t0 = time.monotonic()
        res = redis_server.stop(settings, paths)
        _report_stop("Redis", *(res or (None, True)), time.monotonic() - t0)


def _report_stop(name: str, pid: Optional[int], graceful: bool, seconds: float) -> None:
    if pid is None:
        out.print(f"[dim]-[/dim] {name} was not running", markup=True)
        return
    how = "stopped" if graceful else "[yellow]killed (did not stop on SIGTERM)[/yellow]"
    out.print(f"[green]✓[/green] {name} (pid {pid}) {how} in {seconds:.1f} s", markup=True)


STATUS_STYLE = {"ok": "green", "warn": "yellow", "fail": "red"}
HEALTH_STYLE = {"green": "green", "yellow": "yellow", "red": "red"}


@app.command()
def status(index: Optional[str] = typer.Option(None, "--index", help="also check this catalog alias"),
           as_json: bool = typer.Option(False, "--json", help="one JSON object on the last line")) -> None:
    """Check the cluster the settings point at (GRDR_OPENSEARCH_URL, GRDR_BROKER_URL): reachability, TLS, auth,
    the k-NN plugin and its version, cluster health, the catalog (--index), the ID registry, the broker and a
    worker on the ingest queue. Exit code 1 when a check fails. `grdr doctor` and `grdr cluster status` are one
    command."""
    with user_errors():
        from ingest.submit import broker_checks

        settings = get_settings()
        if index is not None:
            validate_name(index)
        checks = remote.check_opensearch(settings, index) + broker_checks()
        local = local_cluster.describe(settings, ClusterPaths.from_settings(settings))
    failed = any(c.status == "fail" for c in checks)
    if as_json:
        print_json({"ok": not failed, "opensearch_url": settings.opensearch_url,
                    "checks": [c.as_dict() for c in checks],
                    **({"local_nodes": local["nodes"], "indices": local["indices"]} if local else {})})
    else:
        table = Table(show_header=False, box=None, pad_edge=False)
        for c in checks:
            table.add_row(c.name, Text(c.status, style=STATUS_STYLE[c.status]), c.detail)
            if c.fix:
                table.add_row("", "", Text(f"fix: {c.fix}", style="dim"))
        out.print(table)
        if local:
            _print_local(local)
    if failed:
        raise typer.Exit(EXIT_ERROR)



def _print_local(local: dict) -> None:
    """The nodes of this home and where the shards of each index are."""
    nodes = Table(title="local nodes", title_justify="left")
    for col in ("node", "pid", "http", "transport", "roles", "heap"):
        nodes.add_column(col)
    for n in local["nodes"]:
        nodes.add_row(n["name"], str(n["pid"] or "-"), n["http"] or "-", n["transport"] or "-",
                      ",".join(n["roles"]) or "-", f"{n['heap_mb']} MB" if n["heap_mb"] else "-",
                      style=None if n["joined"] else "dim")
    out.print(nodes)
    if not local["indices"]:
        return
    indices = Table(title="indices", title_justify="left")
    for col in ("index", "health", "primaries", "replicas", "shards (p = primary, r = replica)"):
        indices.add_column(col)
    for ix in local["indices"]:
        where = " ".join(f"{s['shard']}{'p' if s['primary'] else 'r'}@{s['node'] or s['state']}" for s in ix["shards"])
        indices.add_row(ix["index"], Text(str(ix["health"]), style=HEALTH_STYLE.get(ix["health"], "")),
                        str(ix["primaries"]), str(ix["replicas"]), where)
    out.print(indices)
