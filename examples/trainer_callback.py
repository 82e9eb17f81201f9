"""transformers' ``Trainer`` with ``MemvizCallback``:

    python examples/trainer_callback.py trainer.memviz

A tiny GPT-2 built from a config, trained for a few steps with gradient
accumulation on random tokens; every Trainer step is a memviz step.
"""

from __future__ import annotations

import sys
import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from memviz.integrations.transformers import MemvizCallback


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, rows: int = 32, seq_len: int = 128) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 256, (rows, seq_len), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def main(output: str, steps: int = 3) -> None:
    config = GPT2Config(vocab_size=256, n_positions=512, n_embd=128, n_layer=2, n_head=4,
                        bos_token_id=0, eos_token_id=0, pad_token_id=0)
    model = GPT2LMHeadModel(config)
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="trainer-"), max_steps=steps,
                             per_device_train_batch_size=2, gradient_accumulation_steps=2,
                             logging_steps=1, report_to=[], save_strategy="no", use_cpu=True,
                             disable_tqdm=True)
    callback = MemvizCallback(output, force=True)
    Trainer(model=model, args=args, train_dataset=RandomTokens(), callbacks=[callback]).train()
    print(f"recorded to {output}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "trainer.memviz")
