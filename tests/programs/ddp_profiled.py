"""Two-rank DDP training; torch.profiler measures the third step in every rank."""
import json
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import ProfilerActivity, profile
from torch.profiler._memory_profiler import Action

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(rank)
model = DistributedDataParallel(nn.Sequential(
    nn.Linear(256, 1024), nn.GELU(), nn.Linear(1024, 1024), nn.GELU(), nn.Linear(1024, 256)))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)


def step(x: torch.Tensor) -> None:
    loss = model(x).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


batch = 64 * (rank + 1)  # the ranks differ: rank 1 holds twice the activations
step(torch.randn(batch, 256))
step(torch.randn(batch, 256))  # DDP rebuilds its buckets in the second step
x = torch.randn(batch, 256)
with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
             with_stack=True) as prof:
    step(x)
deltas = [size if action == Action.CREATE else -size
          for _, action, _, size in sorted(prof._memory_profile().timeline)
          if action in (Action.CREATE, Action.DESTROY)]
with open(f"{sys.argv[1]}.{rank}.json", "w") as f:
    json.dump({"step_peak_above_start": int(np.cumsum(deltas).max())}, f)
dist.destroy_process_group()
