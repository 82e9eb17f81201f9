"""Which techniques a loaded model's structure allows (``structure.structure_of``), said
in words. No torch: the window reads the structure a run's model summary carries."""

from __future__ import annotations

from typing import Any

_NEEDS_BLOCKS = ("checkpointing", "layer-drop", "share-layers", "progressive")


def structure_note(name: str, structure: dict[str, Any]) -> tuple[bool, str]:
    """(whether ``name`` can apply to a model of this structure, what to say about it)."""
    blocks = structure.get("blocks")
    if name in _NEEDS_BLOCKS and not blocks:
        return False, "this model has no stack of repeated blocks to work on"
    if name == "lora":
        targets = structure.get("lora_targets") or []
        if not targets:
            return False, "this model has no linear layers to adapt"
        return True, f"adapts {', '.join(targets)}"
    if name == "checkpointing":
        return True, f"{blocks} blocks, through {structure.get('checkpointing')}"
    if name in ("layer-drop", "share-layers", "progressive"):
        return True, f"{blocks} blocks in {structure.get('block_stack')}"
    if name == "kv-cache" and not structure.get("generates"):
        return False, "this model does not generate"
    return True, ""
