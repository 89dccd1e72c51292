"""Which concrete index a run writes to, guarded by the model fingerprint; the blue/green swap.

IDs from another model are meaningless in an index, so a run refuses an index built by a
different model, and `--reindex` builds the next versioned index and swaps the alias when done.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from grdr_plugin import index as grdr_index
from grdr_plugin.attach import refuse_user_index
from ingest.schemas import Target


def prepare_target(client, alias: str, model_dir: str | Path, *, reindex: bool = False) -> Target:
    """Resolve (creating if needed) the index a run writes to; refuse another model's index."""
    grdr_index.validate_name(alias)
    refuse_user_index(client, alias)  # a full write would replace the user's documents
    model_dir = Path(model_dir).resolve()
    spec = grdr_index.IndexSpec.from_model_dir(model_dir)
    if reindex and grdr_index.alias_target(client, alias) is not None:
        # The next index fills while the alias stays where it is until the swap; its new IDs are published under
        # its own name, so the alias's registry keeps describing what the alias serves.
        name = grdr_index.create_index(client, alias, spec, point_alias=False)
        return Target(index=name, alias=alias, publish_as=name, fingerprint=spec.fingerprint, model_dir=str(model_dir))
    # A fresh alias points at its first index at once; an existing one must hold this model's IDs.
    name, _ = grdr_index.ensure_index(client, alias, spec, model_dir=model_dir)
    return Target(index=name, alias=alias, publish_as=alias, fingerprint=spec.fingerprint, model_dir=str(model_dir))


def finish_reindex(client, target: Target) -> Optional[str]:
    """Make the new index searchable, then move the alias to it atomically; returns the index it left."""
    client.indices.refresh(index=target.index)
    return grdr_index.swap_alias(client, target.alias, target.index)
