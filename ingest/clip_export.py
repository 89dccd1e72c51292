"""Export a Hugging Face CLIP-style vision tower to the ONNX file the ingest workers run.

The only module of ``ingest`` that needs torch + transformers; workers load the result with
onnxruntime alone. Usage: ``python -m ingest.clip_export HF_MODEL_DIR OUT.onnx``.

The ONNX graph takes ``pixel_values`` float32 [B, 3, S, S] (already resized, cropped and
normalised) and returns ``image_embeds`` [B, D]. A sidecar ``OUT.json`` records S and the
normalisation, so the worker preprocesses exactly as the model was trained.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

from grdr_plugin.model.safe_files import refuse_pickles

# CLIP's published pixel statistics, used when the model folder has no preprocessor_config.json.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def preprocessing_of(model_dir: Path, image_size: int) -> dict:
    """Crop size and pixel statistics from the folder's preprocessor_config.json (CLIP defaults otherwise)."""
    pre = model_dir / "preprocessor_config.json"
    cfg = json.loads(pre.read_text()) if pre.is_file() else {}
    crop = cfg.get("crop_size", image_size)
    if isinstance(crop, dict):
        crop = crop.get("height", image_size)
    return {"image_size": int(crop), "mean": list(cfg.get("image_mean", CLIP_MEAN)),
            "std": list(cfg.get("image_std", CLIP_STD))}


def export_clip_vision(model_dir: str | Path, out_path: str | Path, opset: int = 17) -> Path:
    """Write OUT.onnx (+ OUT.json) from a CLIPVisionModelWithProjection-compatible folder."""
    import torch
    from transformers import CLIPVisionModelWithProjection

    model_dir, out_path = Path(model_dir), Path(out_path)
    refuse_pickles(model_dir)
    model = CLIPVisionModelWithProjection.from_pretrained(model_dir, use_safetensors=True).eval()
    prep = preprocessing_of(model_dir, model.config.image_size)

    class Tower(torch.nn.Module):  # the plain tensor -> tensor function ONNX needs
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values=pixel_values).image_embeds

    out_path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(2, 3, prep["image_size"], prep["image_size"])
    with torch.no_grad():
        # dynamo=False: the TorchScript exporter needs no onnxscript and handles CLIP fine.
        torch.onnx.export(Tower(model), (dummy,), str(out_path), input_names=["pixel_values"],
                          output_names=["image_embeds"], dynamic_axes={"pixel_values": {0: "batch"},
                                                                       "image_embeds": {0: "batch"}},
                          opset_version=opset, dynamo=False)
    prep["dim"] = int(model.config.projection_dim)
    sidecar_path(out_path).write_text(json.dumps(prep, indent=2))
    return out_path


def onnx_encoder(given: Path, cache_dir: Path, log: Callable[[str], None] = print) -> Path:
    """`--image-encoder`: an ONNX file as is; a Hugging Face CLIP folder exported once into cache_dir."""
    if given.is_file():
        return given.resolve()
    if (given / "config.json").is_file():
        out = (cache_dir / f"{given.resolve().name}.onnx").resolve()
        if not out.is_file():
            log(f"exporting {given} to {out} (once)")
            export_clip_vision(given, out)
        return out
    raise FileNotFoundError(f"--image-encoder: {given} is neither an .onnx file nor a Hugging Face model folder")


def sidecar_path(onnx_path: Path) -> Path:
    return onnx_path.with_suffix(".json")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m ingest.clip_export HF_MODEL_DIR OUT.onnx", file=sys.stderr)
        return 2
    out = export_clip_vision(args[0], args[1])
    print(f"wrote {out} and {sidecar_path(out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
