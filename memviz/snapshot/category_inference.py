"""Categories for a PyTorch snapshot's allocations that do not say theirs, inferred
from the phase their stack was in and how long they lived.

A snapshot recorded by PyTorch names no category (``unknown``); its frames and its
entries' order still tell a lot. Allocations are taken in order and cut into spans
of one phase (forward, backward, optimizer: what their stacks were running). Then:

- made in an optimizer step and still live when the step's span ends: optimizer
  state (``Optimizer._init_group`` makes it on the first step); freed within: a
  temporary;
- made in backward and live when backward's span ends: a gradient; freed within: a
  temporary;
- made in forward and freed during the backward that follows: an activation (saved
  for backward); freed within the forward: a temporary;
- anything else (no frames, a stack in none of these, or an output kept past its
  backward): other.

Every category found this way is marked inferred; a category the entry carried is
measured and kept as it is.
"""

from __future__ import annotations

import numpy as np

from ..core.categories import CODE
from .trace_columns import BACKWARD, FORWARD, OPTIMIZER


def infer(t_alloc: np.ndarray, t_free: np.ndarray, phase: np.ndarray, category: np.ndarray,
          measured: np.ndarray) -> np.ndarray:
    """The categories, with those not ``measured`` inferred (``phase`` per allocation,
    0 where its stack said nothing; allocations in time order)."""
    category = category.copy()
    n = len(t_alloc)
    if not n:
        return category
    phased = np.flatnonzero(phase > 0)
    span_end = np.full(n, np.inf)  # when the span each allocation was made in ended
    next_backward_end = np.full(n, np.inf)
    if len(phased):
        kinds = phase[phased]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(kinds) != 0) + 1])
        # a span ends when the next one's first allocation is made
        ends_t = np.concatenate([t_alloc[phased[starts[1:]]], [np.inf]])
        span_kind = kinds[starts]
        span_of = np.searchsorted(starts, np.arange(len(phased)), side="right") - 1
        span_end[phased] = ends_t[span_of]
        # for a forward span: the end of the backward span right after it, if any
        after = np.full(len(starts), np.inf)
        follows = np.flatnonzero((span_kind[:-1] == FORWARD) & (span_kind[1:] == BACKWARD))
        after[follows] = ends_t[follows + 1]
        next_backward_end[phased] = after[span_of]
    freed = np.nan_to_num(t_free, nan=np.inf)
    outlives = freed >= span_end
    guess = np.full(n, CODE["other"], dtype=category.dtype)
    opt, back, fwd = phase == OPTIMIZER, phase == BACKWARD, phase == FORWARD
    guess[opt & outlives] = CODE["optimizer_state"]
    guess[back & outlives] = CODE["gradient"]
    guess[(opt | back | fwd) & ~outlives] = CODE["temporary"]
    guess[fwd & outlives & np.isfinite(next_backward_end) & (freed < next_backward_end)] = \
        CODE["activation"]
    unknown = ~measured.astype(bool)
    category[unknown] = guess[unknown]
    return category
