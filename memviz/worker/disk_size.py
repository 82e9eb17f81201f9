"""The model's size on disk, as the run's techniques leave it, measured by writing it.

A memory technique is often a storage technique too (bf16 halves the file, int8
quarters its linear weights, LoRA ships adapters alone). After a run the model
is saved as a user would share it: ``save_pretrained`` (safetensors) for a
transformers or peft model, safetensors for a plain module, ``torch.save`` for
weights safetensors cannot hold (quantized and sparse tensors). The size of
what was written is reported with its size under zstd (level 3), the download a
user would see.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

ZSTD_LEVEL = 3


def _written(folder: Path) -> tuple[int, int, list[str]]:
    import zstandard

    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    total = packed = 0
    names = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        total += path.stat().st_size
        names.append(path.name)
        with open(path, "rb") as source:
            reader = compressor.stream_reader(source)
            while chunk := reader.read(1 << 20):
                packed += len(chunk)
    return total, packed, names


def _save(model: nn.Module, folder: Path) -> str:
    """Write ``model`` into ``folder``; return how."""
    if hasattr(model, "peft_config"):
        model.save_pretrained(folder)  # the adapters alone: the base is shipped once
        return "peft save_pretrained (adapters only)"
    if hasattr(model, "save_pretrained"):
        try:
            model.save_pretrained(folder, safe_serialization=True)
            return "save_pretrained (safetensors)"
        except Exception:  # tensor subclasses safetensors cannot hold: fall back below
            for path in folder.iterdir():
                path.unlink()
    try:
        from safetensors.torch import save_model

        save_model(model, str(folder / "model.safetensors"))
        return "safetensors"
    except Exception:
        torch.save(model.state_dict(), folder / "model.pt")
        return "torch.save (weights safetensors cannot hold)"


def model_on_disk(model: nn.Module) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="memviz-disk-", dir=os.environ.get("TMPDIR")) as tmp:
        folder = Path(tmp)
        how = _save(model, folder)
        total, packed, names = _written(folder)
    return {"bytes": total, "zstd_bytes": packed, "format": how, "files": names}
