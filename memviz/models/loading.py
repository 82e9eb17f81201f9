"""Resolve a model name to a Task: preset, local Hugging Face directory, or factory.

Factories are ``package.module:function`` or ``path/to/file.py:function``. The
function returns an ``nn.Module`` (a transformers model is driven like a preset;
a plain module takes token ids and returns logits), or a dict with ``model`` and
optionally ``make_batch(batch_size, seq_len, device)`` and ``loss(model, batch)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.spec import RunSpec
from .data import BYTE_VOCAB, TokenStream, corpus_bytes
from .presets import BERT_MASK_ID, PRESETS, PRETRAINED_PRESETS, pretrained_path
from .task import Task

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth")


class ModelLoadError(RuntimeError):
    """The model could not be found or built; the message is one line for the user."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _tokens(spec: RunSpec, vocab_size: int, tokenizer: Any = None) -> TokenStream:
    if spec.data == "random":
        return TokenStream(None, vocab_size, spec.seed)
    if tokenizer is not None:
        text = corpus_bytes().tobytes().decode("ascii")
        ids = np.asarray(tokenizer(text, add_special_tokens=False)["input_ids"], dtype=np.int64)
        return TokenStream(ids, vocab_size, spec.seed)
    raw = corpus_bytes().astype(np.int64)
    if vocab_size < BYTE_VOCAB:
        raw = raw % vocab_size
    return TokenStream(raw, vocab_size, spec.seed)


def _hf_kind(model: nn.Module) -> str:
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return "seq2seq"
    return "masked" if "MaskedLM" in type(model).__name__ else "causal"


def _is_hf(model: nn.Module) -> bool:
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel)


def load_hf_directory(path: str, spec: RunSpec, dtype: torch.dtype, name: str) -> Task:
    """Load a ``save_pretrained`` directory (safetensors; remote code never runs)."""
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForSeq2SeqLM,
    )

    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a Hugging Face model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
        archs = " ".join(config.architectures or [])
        if getattr(config, "is_encoder_decoder", False):  # T5, BART, ...
            loaders = [AutoModelForSeq2SeqLM]
        elif "MaskedLM" in archs or "Bert" in archs or config.model_type == "bert":
            loaders = [AutoModelForMaskedLM, AutoModelForCausalLM]
        else:
            loaders = [AutoModelForCausalLM, AutoModelForMaskedLM]
        # a directory of config.json alone (or a simulation, which reads no weights): the
        # architecture with random weights, built in the target dtype
        from_config = spec.simulate or not any(
            next(directory.glob(pattern), None) for pattern in WEIGHT_FILES)
        model, last_error = None, None
        for loader in loaders:
            try:
                model = loader.from_config(config, dtype=dtype) if from_config else \
                    loader.from_pretrained(directory, dtype=dtype, trust_remote_code=False,
                                           local_files_only=True)
                break
            except ValueError as exc:  # this architecture has no such head
                last_error = exc
        if model is None:
            raise ModelLoadError(f"{path}: no language-model head fits: {_one_line(last_error)}")
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load {path}: {_one_line(exc)}") from None
    tokenizer = None
    if any((directory / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer.model")):
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        except Exception:
            tokenizer = None
    vocab = int(config.vocab_size)
    kind = _hf_kind(model)
    mask_id = getattr(tokenizer, "mask_token_id", None) if tokenizer is not None else None
    if kind == "masked" and mask_id is None:
        mask_id = vocab - 1
    return Task(name, model, kind, _tokens(spec, vocab, tokenizer), mask_token_id=mask_id)


def _import_factory(target: str) -> Any:
    module_part, _, func_name = target.rpartition(":")
    if not module_part or not func_name.isidentifier():
        raise ModelLoadError(f"{target!r} is not of the form module:function or file.py:function")
    if module_part.endswith(".py"):
        file = Path(module_part).expanduser()
        if not file.is_file():
            raise ModelLoadError(f"factory file {module_part} does not exist")
        mod_name = f"memviz_user_factory_{abs(hash(str(file.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, file)
        if spec is None or spec.loader is None:
            raise ModelLoadError(f"cannot import {module_part}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except SystemExit as exc:
            raise ModelLoadError(f"importing {module_part} called sys.exit({exc.code!r}): "
                                 "a factory file must define a function, not run") from None
        except Exception as exc:
            raise ModelLoadError(f"importing {module_part} failed: {_one_line(exc)}") from None
    else:
        try:
            module = importlib.import_module(module_part)
        except SystemExit as exc:
            raise ModelLoadError(f"importing {module_part} called sys.exit({exc.code!r})") \
                from None
        except Exception as exc:
            raise ModelLoadError(f"cannot import {module_part}: {_one_line(exc)}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ModelLoadError(f"{module_part} has no function {func_name}")
    return func


def load_factory(target: str, spec: RunSpec, dtype: torch.dtype) -> Task:
    func = _import_factory(target)
    try:
        made = func()
    except SystemExit as exc:
        raise ModelLoadError(f"factory {target} called sys.exit({exc.code!r}) instead of "
                             "returning a model") from None
    except Exception as exc:
        raise ModelLoadError(f"factory {target} raised {_one_line(exc)}") from None
    extras: dict[str, Any] = {}
    if isinstance(made, dict):
        extras = made
        made = extras.get("model")
    if not isinstance(made, nn.Module):
        raise ModelLoadError(
            f"factory {target} returned {type(made).__name__}, not a torch.nn.Module"
        )
    model = made.to(dtype=dtype) if dtype != torch.float32 else made
    if _is_hf(model):
        vocab = int(model.config.vocab_size)
        kind = _hf_kind(model)
        return Task(target, model, kind, _tokens(spec, vocab), mask_token_id=vocab - 1)
    vocab = int(extras.get("vocab_size") or _guess_vocab(model))
    custom = "make_batch" in extras or "loss" in extras
    return Task(
        target, model, "custom" if custom else "plain", _tokens(spec, vocab),
        custom_batch=extras.get("make_batch"), custom_loss=extras.get("loss"),
    )


def _guess_vocab(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            return module.num_embeddings
    return BYTE_VOCAB


def builds_transformers_model(name: str) -> bool:
    """Whether transformers' modeling code builds ``name``: a preset that is not a plain
    module, a pretrained preset, a model directory (a factory may build anything)."""
    if name in PRESETS:
        return PRESETS[name].kind != "plain"
    return name in PRETRAINED_PRESETS or os.path.isdir(os.path.expanduser(name))


def load_task(spec: RunSpec, dtype_name: str = "fp32") -> Task:
    """Build the model named by ``spec.model`` on ``spec.device``, in its target dtype."""
    device = torch.device(spec.device)
    dtype = DTYPES[dtype_name]
    name = spec.model
    with torch.device(device):
        if name in PRESETS:
            preset = PRESETS[name]
            model = preset.build(dtype)
            mask = BERT_MASK_ID if preset.kind == "masked" else None
            vocab = int(getattr(getattr(model, "config", None), "vocab_size", BYTE_VOCAB))
            return Task(name, model, preset.kind, _tokens(spec, vocab), mask_token_id=mask)
        if name in PRETRAINED_PRESETS:
            try:
                path = pretrained_path(name)
            except ImportError as exc:
                raise ModelLoadError(str(exc)) from None
            return load_hf_directory(path, spec, dtype, name)
        if os.path.isdir(os.path.expanduser(name)):
            return load_hf_directory(os.path.expanduser(name), spec, dtype, name)
        if ":" in name:
            return load_factory(name, spec, dtype)
    known = ", ".join([*PRESETS, *PRETRAINED_PRESETS])
    raise ModelLoadError(
        f"no preset, directory or factory named {name!r} (presets: {known}; "
        "a directory must exist; a factory is module:function or file.py:function)"
    )
