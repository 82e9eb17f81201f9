"""Models built here, that memviz was never fitted to: a nanoGPT-style module, and
Hugging Face families saved as directories (config, random weights) at a vocabulary
of several thousand. Used as factories (``tests/model_zoo.py:nanogpt``) and paths."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

VOCAB = 4096


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, block: int) -> None:
        super().__init__()
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        self.heads = heads
        self.register_buffer("bias", torch.tril(torch.ones(block, block)).view(1, 1, block, block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, block: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, block)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                 nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """As karpathy's nanoGPT: ``forward(idx, targets=None)`` returns ``(logits, loss)``;
    without targets, the last position's logits only."""

    def __init__(self, vocab: int = VOCAB, width: int = 128, layers: int = 2, heads: int = 4,
                 block: int = 256) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict({
            "wte": nn.Embedding(vocab, width), "wpe": nn.Embedding(block, width),
            "h": nn.ModuleList(Block(width, heads, block) for _ in range(layers)),
            "ln_f": nn.LayerNorm(width)})
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        t = idx.size(1)
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t, device=idx.device))
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        else:
            logits, loss = self.lm_head(x[:, [-1], :]), None
        return logits, loss


def nanogpt() -> nn.Module:
    return NanoGPT()


def save_hf(kind: str, folder: Path) -> Path:
    """A ``save_pretrained`` directory of a small model of this family."""
    import transformers as tf

    configs = {
        "t5": lambda: tf.T5ForConditionalGeneration(tf.T5Config(
            vocab_size=VOCAB, d_model=128, d_kv=32, d_ff=256, num_layers=2, num_heads=4,
            decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)),
        "bart": lambda: tf.BartForConditionalGeneration(tf.BartConfig(
            vocab_size=VOCAB, d_model=128, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=256,
            decoder_ffn_dim=256, max_position_embeddings=512, pad_token_id=1,
            bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)),
        "mamba": lambda: tf.MambaForCausalLM(tf.MambaConfig(
            vocab_size=VOCAB, hidden_size=128, state_size=16, num_hidden_layers=4,
            expand=2, conv_kernel=4, pad_token_id=0, bos_token_id=0, eos_token_id=0)),
        "mistral": lambda: tf.MistralForCausalLM(tf.MistralConfig(
            vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            tie_word_embeddings=False, pad_token_id=0)),
        "qwen2": lambda: tf.Qwen2ForCausalLM(tf.Qwen2Config(
            vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
            tie_word_embeddings=True, pad_token_id=0)),
        # mixtures of experts: 4 and 8 experts, 2 a token
        "mixtral": lambda: tf.MixtralForCausalLM(tf.MixtralConfig(
            vocab_size=VOCAB, hidden_size=128, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
            num_experts_per_tok=2, max_position_embeddings=1024, tie_word_embeddings=False,
            pad_token_id=0)),
        "olmoe": lambda: tf.OlmoeForCausalLM(tf.OlmoeConfig(
            vocab_size=VOCAB, hidden_size=128, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, num_experts=8, num_experts_per_tok=2,
            max_position_embeddings=1024, pad_token_id=0)),
        "phi": lambda: tf.PhiForCausalLM(tf.PhiConfig(
            vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=1024, pad_token_id=0)),
    }
    torch.manual_seed(0)
    path = folder / kind
    configs[kind]().save_pretrained(path)
    return path
