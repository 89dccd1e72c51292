"""The model folder: config.json, model.safetensors, tokenizer/, text_encoder/, onnx/.

Nothing is ever pickled: weights, checkpoints and optimizer state are safetensors, the rest
is JSON.  The fingerprint is

    sha256( bytes(model.safetensors) + b"\\n" + canonical_json(config without the UNHASHED keys) )

where canonical_json = json.dumps(obj, sort_keys=True, separators=(",", ":")).  The query
layer can recompute it with hashlib + json alone; the index stores it in its _meta.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from grdr_plugin.model.config import ModelConfig
from grdr_plugin.model.safe_files import refuse_pickles

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
ENCODER_DIR = "text_encoder"  # the encoder's HF config.json (its weights are in model.safetensors)
ONNX_DIR = "onnx"
ENCODER_PREFIX = "text_encoder."
SHAPE_FIELDS = ("views", "levels", "codebook_size", "feature_dim", "frames", "rerank_dim", "fingerprint")
# Not hashed: the fingerprint itself, the record of the query-encoder graphs (`grdr export` adds one to
# a trained folder) and the serving defaults (`grdr tune` sets them): indices built by the model stay valid.
UNHASHED = ("fingerprint", "query_encoder", "serving", "serving_at_scale")


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def compute_fingerprint(model_dir: str | Path, config: dict[str, Any] | None = None) -> str:
    model_dir = Path(model_dir)
    if config is None:
        config = json.loads((model_dir / CONFIG).read_text())
    cfg = {k: v for k, v in config.items() if k not in UNHASHED}
    h = hashlib.sha256()
    with (model_dir / WEIGHTS).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    h.update(b"\n")
    h.update(canonical_json(cfg))
    return h.hexdigest()


def read_config(model_dir: str | Path) -> ModelConfig:
    """MODEL_DIR/config.json, the one reader of it (training, serving, ingest and the index all call this)."""
    path = Path(model_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"--model: {path} not found; train a model with `grdr train` first")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"--model: {path} is not valid JSON ({exc})") from None
    # Shapes a trained model was built with have no sensible default: a file without them is not a model's.
    missing = [k for k in SHAPE_FIELDS if not isinstance(raw, dict) or k not in raw]
    if missing:
        raise ValueError(f"--model: {path} lacks {', '.join(missing)}; is it a grdr model folder?")
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"--model: {path} is not a grdr model config ({fields})") from None


def write_config(model_dir: str | Path, cfg: ModelConfig) -> None:
    """MODEL_DIR/config.json, the one writer of it (training; `grdr export` records its graphs, `grdr tune`
    the serving defaults)."""
    (Path(model_dir) / CONFIG).write_text(json.dumps(cfg.model_dump(), indent=2) + "\n")


def save_model(model_dir: str | Path, model, encoder, tokenizer) -> ModelConfig:
    """Write weights (heads + frozen encoder), tokenizer files and config with fingerprint."""
    from safetensors.torch import save_file

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({ENCODER_PREFIX + k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()})
    save_file(tensors, str(model_dir / WEIGHTS), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(model_dir / TOKENIZER_DIR))
    encoder.config.save_pretrained(str(model_dir / ENCODER_DIR))
    cfg = model.cfg.model_copy(update={"fingerprint": ""})
    fp = compute_fingerprint(model_dir, cfg.model_dump())
    cfg = cfg.model_copy(update={"fingerprint": fp})
    write_config(model_dir, cfg)
    model.cfg = cfg
    return cfg


def load_model(model_dir: str | Path, device: str = "cpu", verify: bool = True):
    """(GRDR model, encoder, tokenizer, ModelConfig) from a model folder; checks the fingerprint."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from grdr_plugin.model.nets import GRDR

    model_dir = Path(model_dir)
    refuse_pickles(model_dir)
    cfg = read_config(model_dir)
    if verify and cfg.fingerprint != compute_fingerprint(model_dir, cfg.model_dump()):
        raise ValueError(f"{model_dir}: fingerprint mismatch (weights or config changed after training)")
    tensors = load_file(str(model_dir / WEIGHTS), device="cpu")
    model = GRDR(cfg)
    model.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(ENCODER_PREFIX)})
    enc_cfg = AutoConfig.from_pretrained(str(model_dir / ENCODER_DIR))
    encoder = AutoModel.from_config(enc_cfg)
    encoder_tensors = {k[len(ENCODER_PREFIX):]: v for k, v in tensors.items() if k.startswith(ENCODER_PREFIX)}
    encoder.load_state_dict(encoder_tensors, strict=False)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir / TOKENIZER_DIR))
    model.to(device).eval()
    encoder.to(device).eval()
    torch.set_grad_enabled(True)  # callers use inference_mode where they need it
    return model, encoder, tokenizer, cfg


def save_tensors(path: Path, tensors: dict, meta: dict[str, Any] | None = None) -> None:
    """Atomic safetensors write (checkpoints survive a kill mid-write)."""
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp),
              metadata={"json": json.dumps(meta)} if meta else None)
    tmp.replace(path)


def optimizer_to_tensors(opt) -> tuple[dict, dict[str, Any]]:
    """Flatten an optimizer state dict into tensors + JSON (no pickle)."""
    import torch

    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{pid}.{key}"] = val
            else:
                scalars[f"{pid}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt, tensors: dict, meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    for name, val in meta["scalars"].items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
