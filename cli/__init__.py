"""The `grdr` command line: thin typer wrappers over the layers below (model, ingest, query, bench)."""
