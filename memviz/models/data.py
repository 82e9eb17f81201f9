"""Training tokens: the built-in corpus at byte level, or random tokens."""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch

BYTE_VOCAB = 256


def corpus_bytes() -> np.ndarray:
    """The built-in corpus as uint8 byte values (no tokenizer needed)."""
    raw = resources.files("memviz.models").joinpath("data/corpus.txt").read_bytes()
    return np.frombuffer(raw, dtype=np.uint8)


class TokenStream:
    """Draws (batch, length) windows of token ids from a fixed token array, seeded."""

    def __init__(self, tokens: np.ndarray | None, vocab_size: int, seed: int) -> None:
        self.tokens = None if tokens is None else torch.from_numpy(tokens.astype(np.int64))
        self.vocab_size = vocab_size
        self.generator = torch.Generator().manual_seed(seed)

    def window(self, batch: int, length: int) -> torch.Tensor:
        if self.tokens is None:
            return torch.randint(0, self.vocab_size, (batch, length), generator=self.generator)
        if len(self.tokens) <= length:
            reps = length // len(self.tokens) + 2
            self.tokens = self.tokens.repeat(reps)
        starts = torch.randint(0, len(self.tokens) - length, (batch,), generator=self.generator)
        offsets = torch.arange(length)
        return self.tokens[starts[:, None] + offsets[None, :]]
