"""`grdr index create|list|info|drop`."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from cli.console import console, fail, out, print_json, user_errors
from grdr_plugin import index as grdr_index
from grdr_plugin.capacity import CapacityReport
from grdr_plugin.model.artifacts import read_config
from grdr_plugin.settings import get_settings

app = typer.Typer(help="Create, list, inspect and drop catalog indices (an alias over versioned indices).",
                  no_args_is_help=True, rich_markup_mode=None)


@app.command()
def create(model: Path = typer.Option(..., "--model", help="trained model folder (config.json)"),
           index: str = typer.Option(..., "--index", help="alias name of the catalog index"),
           shards: Optional[int] = typer.Option(None, "--shards", min=1, max=grdr_index.MAX_SHARDS,
                                                help="number_of_shards (default GRDR_INDEX_SHARDS, 1)"),
           replicas: Optional[int] = typer.Option(
               None, "--replicas", min=0,
               help="number_of_replicas (default GRDR_INDEX_REPLICAS; unset: 1 with >= 2 data nodes, else 0)")) -> None:
    """Create the first versioned index for MODEL behind the alias. Idempotent: when the alias already holds
    this model's index, nothing changes (exit 0); another model's index is refused (use `grdr ingest --reindex`)."""
    with user_errors():
        spec = grdr_index.IndexSpec.from_model_dir(model)
        client = get_settings().opensearch_client()
        layout = grdr_index.plan_layout(client, shards, replicas)
        name, created = grdr_index.ensure_index(client, index, spec, model_dir=model, layout=layout)
        if not created:
            layout = grdr_index.layout_of(client, name)
    if created:
        out.print(f"created {name} (alias {index}, grdr_vec dim {spec.rerank_dim}, fingerprint {spec.fingerprint}); "
                  f"{layout.describe()}")
    else:
        out.print(f"{index} already points at {name} ({layout.shards} shards, {layout.replicas} replicas), filled "
                  "by this model: nothing to create (`grdr ingest --reindex --shards S --replicas R` builds a new one)")


@app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="one JSON object on the last line")) -> None:
    """Every catalog on the cluster: alias, the index it serves, versions, documents, health, model."""
    with user_errors():
        catalogs = grdr_index.list_catalogs(get_settings().opensearch_client())
    if as_json:
        print_json({"catalogs": catalogs})
        return
    if not catalogs:
        out.print("no grdr catalog on this cluster; `grdr index create --model MODEL --index NAME` makes one")
        return
    table = Table("alias", "index", "versions", "documents", "health", "fingerprint", "mode")
    for c in catalogs:
        table.add_row(c["alias"], c["index"] or "(none: alias unset)", str(len(c["versions"])),
                      "" if c["docs"] is None else f"{c['docs']:,}", c["health"] or "", (c["fingerprint"] or "")[:12],
                      c["mode"])
    out.print(table)


@app.command()
def info(name: str = typer.Argument(..., metavar="NAME", help="alias name"),
         max_pool: Optional[int] = typer.Option(None, "--max-pool", min=1,
                                                help="the recall budget the capacity report measures IDs against "
                                                     "(grdr serve's; default: the catalog's)"),
         model: Optional[Path] = typer.Option(None, "--model", help="the model serving the index: the report then "
                                              "measures the budget against its serving defaults (config.json)"),
         as_json: bool = typer.Option(False, "--json", help="one JSON object on the last line")) -> None:
    """Documents, distinct semantic IDs, shards, replicas, health, store size, versions, fields, model, and
    capacity: videos per ID, the budget's share, and whether the catalog has outgrown its codebook or the
    serving model's defaults (a warning naming the fix)."""
    from query.catalog_capacity import index_capacity  # the query layer's ID reader, loaded only here

    with user_errors():
        client = get_settings().opensearch_client()
        data = grdr_index.index_info(client, grdr_index.validate_name(name))
        serving = None
        if model is not None:
            cfg = read_config(model)
            if cfg.fingerprint != data["fingerprint"]:
                raise ValueError(f"--model: {model} is model {cfg.fingerprint[:12]}, but {data['alias']} holds the "
                                 f"IDs of {str(data['fingerprint'])[:12]}; name the model that serves it")
            serving = cfg
        report = index_capacity(client, data["alias"], data["index"], data["meta"], max_pool, serving)
    data["capacity"] = report.model_dump() if report is not None else None
    if as_json:
        print_json(data)
        return
    table = Table(title=f"{data['alias']} -> {data['index']}", show_header=False)
    table.add_row("versions", ", ".join(data["versions"]))
    table.add_row("documents", f"{data['docs']:,}")
    table.add_row("distinct IDs", f"{data['distinct_ids']:,}")
    table.add_row("shards / replicas", f"{data['shards']} / {data['replicas']}")
    table.add_row("health", data["health"])
    table.add_row("document order", f"smallest of {data['sorted_by']}" if data["sorted_by"] else
                  f"as ingested (`grdr ingest --dataset D --model M --index {data['alias']} --reindex` builds a "
                  "version kept in ID order)")
    table.add_row("store", f"{data['store_bytes'] / 1e6:.2f} MB")
    table.add_row("fingerprint", str(data["fingerprint"]))
    if data["meta"]:
        table.add_row("scorer", grdr_index.GrdrMeta.model_validate(data["meta"]).scorer)
    for field, kind in data["fields"].items():
        table.add_row(f"field {field}", kind)
    if report is None:
        table.add_row("capacity", "unknown: _meta.grdr records no views, levels and codebook_size (not a grdr index)")
    else:
        _capacity_rows(table, report)
    out.print(table)
    if report is not None and report.warning:
        console.print(f"warning: {report.warning}", style="yellow", markup=False, highlight=False)


def _capacity_rows(table: Table, c: CapacityReport) -> None:
    per_id = c.videos_per_id
    table.add_row("IDs used", f"{c.distinct_ids:,} of {c.id_space:,} (C={c.codebook_size}, L={c.levels}): "
                              f"{c.occupancy:.2%}")
    table.add_row("videos per ID", f"p50 {per_id.p50:,}, p99 {per_id.p99:,}, max {per_id.max:,}")
    table.add_row("(video, ID) pairs", f"{c.postings:,} ({c.videos:,} videos, K={c.views})")
    table.add_row(f"IDs over the budget ({c.max_pool:,})",
                  f"{c.crowded_ids:,}, holding {c.crowded_share:.2%} of the pairs")
    tuned = f"; tuned on {c.tuned_videos:,} videos" if c.tuned_videos else ""
    table.add_row("budget share", f"{c.budget_share:.2%} of the pairs (the model recalls at {c.pool_share:.1%}{tuned})")


@app.command()
def drop(name: str = typer.Argument(..., metavar="NAME", help="alias name"),
         yes: bool = typer.Option(False, "--yes", "-y", help="drop without asking (for scripts)")) -> None:
    """Delete the alias, every versioned index behind it and its IDs in the registry. Asks first, unless --yes."""
    if not yes and not sys.stdin.isatty():
        raise fail(f"`grdr index drop {name}` deletes every document of the catalog; nothing to confirm it on "
                   "this terminal: pass --yes")
    with user_errors():
        client = get_settings().opensearch_client()
        versions = grdr_index.concrete_indices(client, grdr_index.validate_name(name))
        if not versions:
            out.print(f"nothing to drop for {name}")
            return
        if not yes:
            docs = client.count(index=",".join(versions))["count"]
            typer.confirm(f"drop {name}: {', '.join(versions)} ({docs:,} documents)?", abort=True, err=True)
        dropped = grdr_index.drop_index(client, name)
    out.print(f"dropped {', '.join(dropped)}")
