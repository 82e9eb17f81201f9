"""Which rank of a launched job this process is, and where each rank's file goes.

A launcher (``torchrun``, ``python -m torch.distributed.run``) starts one process a
rank and tells each its place in ``RANK`` and ``WORLD_SIZE``. Every rank records to a
file of its own beside rank 0's: ``train.memviz`` for rank 0, ``train.rank1.memviz``
for rank 1, and so on, so no two ranks ever write the same file, and opening rank
0's file finds the others (``ranks_beside``).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping
from pathlib import Path

_RANK_SUFFIX = re.compile(r"\.rank(\d+)$")


def launched_rank(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """(rank, world size) when a launcher started this process as one of several
    ranks; None otherwise (or when the variables are not whole numbers)."""
    env = os.environ if environ is None else environ
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    return (rank, world) if world > 1 and 0 <= rank < world else None


def launched_job(environ: Mapping[str, str] | None = None) -> str:
    """What the ranks of one launched job share and no other job does: the launcher's
    run id, else where the ranks meet."""
    env = os.environ if environ is None else environ
    return env.get("TORCHELASTIC_RUN_ID") or (
        f"{env.get('MASTER_ADDR', '')}:{env.get('MASTER_PORT', '')}")


def rank_path(path: str | os.PathLike, rank: int) -> Path:
    """Rank ``rank``'s file for a run recorded to ``path`` (rank 0's is ``path``)."""
    path = Path(path)
    if rank == 0:
        return path
    return path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def ranks_beside(path: str | os.PathLike, world_size: int) -> dict[int, Path]:
    """The other ranks' files next to rank 0's ``path`` that exist, by rank (found by
    listing the folder, so a file claiming a huge world costs nothing)."""
    path = Path(path)
    found = {}
    for candidate in path.parent.glob(f"{glob.escape(path.stem)}.rank*{path.suffix}"):
        rank = rank_of_path(candidate)
        if 0 < rank < world_size and candidate == rank_path(path, rank):
            found[rank] = candidate
    return dict(sorted(found.items()))


def rank_of_path(path: str | os.PathLike) -> int:
    """The rank a file's name says it holds (0 when it names none)."""
    found = _RANK_SUFFIX.search(Path(path).stem)
    return int(found.group(1)) if found else 0
