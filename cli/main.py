"""The `grdr` command line.

Each area owns its commands in its own module; this file only wires them together.
Commands that need Celery or the query layer (ingest, search, serve, bench) import
them lazily inside the command so `grdr train` and `grdr cluster start` never load them.
"""
from __future__ import annotations

from importlib.metadata import version
from typing import Optional

import typer

from cli.cluster_commands import app as cluster_app
from cli.cluster_commands import status as doctor
from cli.console import EXIT_CODES_HELP
from cli.dataset_commands import app as dataset_app
from cli.index_commands import app as index_app

# rich_markup_mode=None: plain help, so "[frames.npy]" stays text and flags show no "<bool>" type
app = typer.Typer(help="grdr: generative recall with dense reranking for text-to-video search on OpenSearch",
                  epilog=EXIT_CODES_HELP, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)


def _version(show: bool) -> None:
    if show:
        typer.echo(f"grdr {version('grdr')}")
        raise typer.Exit()


@app.callback()
def main(_: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                          help="print the version and exit")) -> None:
    pass  # the options of `grdr` itself; the app's help text says what it is


app.add_typer(cluster_app, name="cluster")
app.add_typer(index_app, name="index")
app.add_typer(dataset_app, name="dataset")

from cli.attach_commands import register as register_attach_commands  # noqa: E402
from cli.bench_commands import register as register_bench_commands  # noqa: E402
from cli.ingest_commands import register as register_ingest_commands  # noqa: E402
from cli.loadtest_commands import register as register_loadtest_commands  # noqa: E402
from cli.model_commands import register as register_model_commands  # noqa: E402
from cli.query_commands import register as register_query_commands  # noqa: E402

register_model_commands(app)
register_ingest_commands(app)
register_attach_commands(app)
register_query_commands(app)
register_loadtest_commands(app)
register_bench_commands(app)
app.command("doctor")(doctor)


if __name__ == "__main__":
    app()
