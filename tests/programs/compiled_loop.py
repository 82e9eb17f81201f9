"""A user's training loop under torch.compile: a small GPT-style LM compiled whole,
AdamW, four steps. Prints Dynamo's counters as JSON at the end, so a run with and a
run without memviz can be compared.

    python compiled_loop.py BACKEND [track OUTPUT.memviz]
"""

import json
import sys

import torch
from torch._dynamo.utils import counters


class Block(torch.nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.ln = torch.nn.LayerNorm(width)
        self.fc = torch.nn.Linear(width, 4 * width)
        self.out = torch.nn.Linear(4 * width, width)

    def forward(self, x):
        return x + self.out(torch.nn.functional.gelu(self.fc(self.ln(x))))


class LM(torch.nn.Module):
    def __init__(self, width: int = 64, blocks: int = 2, vocab: int = 100) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, width)
        self.blocks = torch.nn.ModuleList([Block(width) for _ in range(blocks)])
        self.head = torch.nn.Linear(width, vocab)

    def forward(self, ids):
        x = self.emb(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def main() -> None:
    backend = sys.argv[1]
    torch.manual_seed(0)
    model = LM()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    compiled = torch.compile(model, backend=backend)
    ids = torch.randint(0, 100, (4, 32))

    def train() -> None:
        for _ in range(4):
            logits = compiled(ids)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 100), ids.reshape(-1))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    if sys.argv[2:3] == ["track"]:
        import memviz

        with memviz.track(output=sys.argv[3]):
            train()
    else:
        train()
    print(json.dumps({k: {name: n for name, n in v.items()} for k, v in counters.items()
                      if v}, sort_keys=True))


if __name__ == "__main__":
    main()
