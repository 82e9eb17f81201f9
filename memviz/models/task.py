"""A model plus how to feed it: batches, a loss, and whether it can generate.

The runner drives every model through this one interface, so a preset, a
local Hugging Face directory and a user's factory all run the same loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .conventions import Convention, find_convention, plain_logits, plain_loss, split_output
from .data import TokenStream

MASK_FRACTION = 0.15


@dataclass
class Task:
    name: str
    model: nn.Module
    kind: str  # "causal", "masked", "seq2seq", "plain" or "custom"
    tokens: TokenStream
    mask_token_id: int | None = None
    custom_batch: Callable[..., Any] | None = None
    custom_loss: Callable[[nn.Module, Any], torch.Tensor] | None = None
    convention: Convention | None = None  # how a plain model is fed (set when it loads)

    def __post_init__(self) -> None:
        if self.kind == "plain" and self.convention is None:
            self.convention = find_convention(self.model)

    @property
    def can_generate(self) -> bool:
        return self.kind in ("causal", "seq2seq") and hasattr(self.model, "generate")

    def make_batch(self, batch_size: int, seq_len: int, device: torch.device) -> Any:
        if self.custom_batch is not None:
            return self.custom_batch(batch_size, seq_len, device)
        if self.kind == "masked":
            ids = self.tokens.window(batch_size, seq_len)
            labels = ids.clone()
            picked = torch.rand(ids.shape, generator=self.tokens.generator) < MASK_FRACTION
            picked[:, 0] |= ~picked.any(dim=1)  # at least one masked token per row
            labels[~picked] = -100
            ids = ids.masked_fill(picked, self.mask_token_id)
            return {"input_ids": ids.to(device), "labels": labels.to(device)}
        if self.kind == "seq2seq":  # the text goes on: the encoder reads a window, the
            ids = self.tokens.window(batch_size, 2 * seq_len)  # decoder writes the next one
            return {"input_ids": ids[:, :seq_len].contiguous().to(device),
                    "labels": ids[:, seq_len:].contiguous().to(device)}
        ids = self.tokens.window(batch_size, seq_len + (1 if self.kind == "plain" else 0))
        return {"input_ids": ids.to(device)}

    def loss(self, batch: Any) -> torch.Tensor:
        """The training loss; the model's output is dropped as soon as it is taken."""
        if self.custom_loss is not None:
            return self.custom_loss(self.model, batch)
        if self.kind == "plain":
            return plain_loss(self.model, self.convention, batch["input_ids"])
        labels = batch["labels"] if self.kind in ("masked", "seq2seq") else batch["input_ids"]
        return self.model(input_ids=batch["input_ids"], labels=labels).loss

    def logits(self, batch: Any) -> torch.Tensor:
        """The model's output scores for a batch (for output drift); plain models only
        take token ids."""
        if self.kind == "plain":
            return plain_logits(self.model, self.convention, batch["input_ids"])
        if self.kind == "custom":
            return split_output(self.model(batch["input_ids"]))[0]
        if self.kind == "seq2seq":
            return self.model(input_ids=batch["input_ids"], labels=batch["labels"]).logits
        return self.model(input_ids=batch["input_ids"]).logits

    def generate(self, batch: Any, max_new_tokens: int, **kwargs: Any) -> torch.Tensor:
        if not self.can_generate:
            raise TypeError(
                f"{self.name} cannot generate: generation needs a Hugging Face causal or "
                "encoder-decoder LM"
            )
        ids = batch["input_ids"]
        return self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=getattr(self.model.config, "pad_token_id", None) or 0,
            **kwargs,
        )
