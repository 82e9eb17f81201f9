"""What ``torch.compile`` did in this process, and what that leaves unseen.

Read from Dynamo's own counters at the end of tracking (nothing is imported: a
program that never compiled has no Dynamo loaded, and gets None).
"""

from __future__ import annotations

import sys
from typing import Any

# allocations made beneath the dispatcher, which the per-op tracker cannot see
UNSEEN = ("buffers that inductor's generated code allocates itself (its fused kernels' "
          "outputs and intermediates) are not counted: parameters, gradients, optimizer "
          "state, the tensors saved for backward and every op dispatched from the compiled "
          "code are")


def compile_report() -> dict[str, Any] | None:
    """Frames compiled, graphs, graph breaks (with their first reasons) and recompiles
    of this process so far; None when nothing was compiled."""
    utils = sys.modules.get("torch._dynamo.utils")
    if utils is None:
        return None
    counters = utils.counters  # read with .get: a defaultdict grows on a plain lookup
    compiled = int(counters.get("frames", {}).get("ok", 0))
    if not compiled:
        return None
    breaks = counters.get("graph_break", {})
    inductor = "torch._inductor.compile_fx" in sys.modules
    return {
        "frames_compiled": compiled,
        "graphs": int(counters.get("stats", {}).get("unique_graphs", 0)),
        "graph_breaks": int(sum(breaks.values())),
        "graph_break_reasons": [str(reason).split("\n")[0][:200]
                                for reason in list(breaks)[:5]],
        "recompiles": int(sum(counters.get("recompiles", {}).values())),
        "inductor": inductor,
        "unseen": UNSEEN if inductor else None,
    }
