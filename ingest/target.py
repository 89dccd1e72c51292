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


def prepare_target(client, alias: str, model_dir: str | Path, *, reindex: bool = False,
                   shards: Optional[int] = None, replicas: Optional[int] = None) -> Target:
    """Resolve (creating if needed) the index a run writes to; refuse another model's index.
    shards/replicas: of the index a run creates (a reindex keeps the current index's unless given)."""
    grdr_index.validate_name(alias)
    refuse_user_index(client, alias)  # a full write would replace the user's documents
    model_dir = Path(model_dir).resolve()
    spec = grdr_index.IndexSpec.from_model_dir(model_dir)
    current = grdr_index.alias_target(client, alias)
    if reindex and current is not None:
        # The next index fills while the alias stays where it is until the swap; its new IDs are published under
        # its own name, so the alias's registry keeps describing what the alias serves.
        layout = grdr_index.plan_layout(client, shards, replicas, like=current)
        name = grdr_index.create_index(client, alias, spec, point_alias=False, layout=layout)
        return Target(index=name, alias=alias, publish_as=name, fingerprint=spec.fingerprint, model_dir=str(model_dir))
    if current is not None:
        _refuse_new_layout(client, current, shards, replicas)
    # A fresh alias points at its first index at once; an existing one must hold this model's IDs.
    layout = None if current is not None else grdr_index.plan_layout(client, shards, replicas)
    name, _ = grdr_index.ensure_index(client, alias, spec, model_dir=model_dir, layout=layout)
    return Target(index=name, alias=alias, publish_as=alias, fingerprint=spec.fingerprint, model_dir=str(model_dir))


def _refuse_new_layout(client, index: str, shards: Optional[int], replicas: Optional[int]) -> None:
    """--shards/--replicas that differ from the index a run would write to: only a new index can take them."""
    have = grdr_index.layout_of(client, index)
    if (shards is not None and shards != have.shards) or (replicas is not None and replicas != have.replicas):
        raise ValueError(f"--shards/--replicas: {index} has {have.shards} shards and {have.replicas} replicas; "
                         "add --reindex to build a new index with the ones asked for")


def finish_reindex(client, target: Target) -> Optional[str]:
    """Make the new index searchable, then move the alias to it atomically; returns the index it left."""
    client.indices.refresh(index=target.index)
    return grdr_index.swap_alias(client, target.alias, target.index)
