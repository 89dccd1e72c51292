"""`grdr index create|drop|info`."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cli.console import console, print_json, user_errors
from grdr_plugin import index as grdr_index
from grdr_plugin.settings import get_settings

app = typer.Typer(help="Create, drop and inspect a catalog index (an alias over versioned indices).",
                  no_args_is_help=True)


@app.command()
def create(model: Path = typer.Option(..., "--model", help="trained model folder (config.json)"),
           index: str = typer.Option(..., "--index", help="alias name of the catalog index"),
           replicas: int = typer.Option(0, help="number_of_replicas")) -> None:
    """Create the next versioned index for MODEL and point the alias at it if it is free."""
    with user_errors():
        spec = grdr_index.IndexSpec.from_model_dir(model)
        name = grdr_index.create_index(get_settings().opensearch_client(), index, spec, replicas=replicas)
        console.print(f"created [bold]{name}[/bold] (alias {index}, grdr_vec dim {spec.rerank_dim}, "
                      f"fingerprint {spec.fingerprint[:12]})")


@app.command()
def drop(name: str = typer.Argument(..., help="alias name")) -> None:
    """Delete the alias and every versioned index behind it."""
    with user_errors():
        dropped = grdr_index.drop_index(get_settings().opensearch_client(), grdr_index.validate_name(name))
        console.print(f"dropped {', '.join(dropped)}" if dropped else f"nothing to drop for {name}")


@app.command()
def info(name: str = typer.Argument(..., help="alias name"),
         as_json: bool = typer.Option(False, "--json", help="one JSON object on the last line")) -> None:
    """Doc count, store size, mapping summary and model fingerprint."""
    with user_errors():
        data = grdr_index.index_info(get_settings().opensearch_client(), name)
    if as_json:
        print_json(data)
        return
    table = Table(title=f"{data['alias']} -> {data['index']}", show_header=False)
    table.add_row("versions", ", ".join(data["versions"]))
    table.add_row("documents", f"{data['docs']:,}")
    table.add_row("store", f"{data['store_bytes'] / 1e6:.2f} MB")
    table.add_row("fingerprint", str(data["fingerprint"]))
    for field, kind in data["fields"].items():
        table.add_row(f"field {field}", kind)
    console.print(table)
