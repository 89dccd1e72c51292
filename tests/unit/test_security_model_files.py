"""Model folders load from safetensors and JSON only: a pickle file is refused, and nothing is ever unpickled.

The pickles here are booby-trapped: unpickling one creates a sentinel file, so "refused" also
means "never read".
"""
import pickle
import shutil
from pathlib import Path

import pytest
from safetensors import SafetensorError

from grdr_plugin.model.artifacts import WEIGHTS, load_model
from grdr_plugin.model.text import load_encoder
from grdr_plugin.runtime import ModelRuntime


class _Trap:
    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):  # what an attacker's pickle does: run code while being read
        return (Path.touch, (self.sentinel,))


def trap(path: Path, sentinel: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(_Trap(sentinel)))
    return path


@pytest.fixture
def model_copy(tiny_model_dir, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))


def test_the_trap_works(tmp_path):
    pickle.loads(trap(tmp_path / "t.pkl", tmp_path / "fired").read_bytes())
    assert (tmp_path / "fired").exists()


@pytest.mark.parametrize("name", ["weights.pt", "text_encoder/pytorch_model.bin", "optimizer.pkl"])
@pytest.mark.parametrize("loader", [ModelRuntime, load_model], ids=["onnx-runtime", "torch"])
def test_a_model_folder_with_a_pickle_is_refused_naming_the_file(model_copy, tmp_path, name, loader):
    trap(model_copy / name, tmp_path / "fired")
    with pytest.raises(ValueError, match=f"pickle-format file.*{Path(name).name}.*never unpickles"):
        loader(model_copy)
    assert not (tmp_path / "fired").exists()


def test_a_pickle_posing_as_safetensors_is_not_unpickled(model_copy, tmp_path):
    trap(model_copy / WEIGHTS, tmp_path / "fired")
    with pytest.raises(SafetensorError):  # safetensors reads a JSON header, never a pickle
        load_model(model_copy, verify=False)
    assert not (tmp_path / "fired").exists()


def test_a_text_encoder_folder_with_only_pickled_weights_is_refused(tmp_path):
    folder = tmp_path / "encoder"
    trap(folder / "pytorch_model.bin", tmp_path / "fired")
    (folder / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="pytorch_model.bin"):
        load_encoder(str(folder))
    assert not (tmp_path / "fired").exists()
