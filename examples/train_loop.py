"""A plain PyTorch training loop: no memviz in it. Profile it as it is with

    memviz record -o train.memviz -- python examples/train_loop.py --steps 3

A GPT-2 style model built from a config (random weights, nothing downloaded),
AdamW with two parameter groups, a learning-rate schedule and gradient
accumulation: memviz counts one step per optimizer step.
"""

from __future__ import annotations

import argparse

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def build_model() -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=256, n_positions=512, n_embd=128, n_layer=2, n_head=4,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return GPT2LMHeadModel(config)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--accumulate", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)
    schedule = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.1, total_iters=args.steps)
    for step in range(args.steps):
        for _ in range(args.accumulate):
            ids = torch.randint(0, 256, (args.batch_size, args.seq_len))
            loss = model(input_ids=ids, labels=ids).loss / args.accumulate
            loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        print(f"step {step}: loss {loss.item() * args.accumulate:.3f}", flush=True)


if __name__ == "__main__":
    main()
