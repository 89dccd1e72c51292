"""Model folders hold safetensors, JSON, tokenizer and ONNX files only: pickle files are refused before loading.

A pickle (torch ``.pt``/``.bin``, ``.pkl``, ...) runs code while it is read, so a model folder that
someone else produced must never be unpickled. grdr writes none; finding one means the folder is not
grdr's own, and the loader stops with the file named instead of ignoring or reading it.
"""
from __future__ import annotations

from pathlib import Path

PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"})


def refuse_pickles(model_dir: Path | str) -> None:
    """Raise ValueError naming every pickle-format file under ``model_dir`` (none: return)."""
    root = Path(model_dir)
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                   if p.suffix.lower() in PICKLE_SUFFIXES and p.is_file())
    if found:
        raise ValueError(f"--model: {root} holds pickle-format file(s) {', '.join(found)}; grdr loads weights only "
                         "from safetensors and settings only from JSON, and never unpickles (a pickle can run code "
                         "when read). Remove them, or convert the weights with safetensors, and retry")
