"""``memviz fit``: the largest batch (or sequence) under a memory limit, or the technique
sets that make a workload fit it, confirmed by real runs under that limit."""

from __future__ import annotations

import argparse
import contextlib
import sys

from ..core.sizes import parse_size
from ..core.spec import SpecError
from .formatting import human_bytes, table
from .run_cmd import add_spec_arguments, spec_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_spec_arguments(parser)
    parser.add_argument("--limit", required=True, metavar="SIZE",
                        help="the memory to fit under, e.g. 24GiB (RSS on CPU, GPU on CUDA)")
    parser.add_argument("--search", choices=["batch", "seq"], default="batch",
                        help="what to grow: the batch size (default) or the sequence length")
    parser.add_argument("--rank-sets", action="store_true",
                        help="instead: technique sets that make this batch fit, cheapest "
                             "expected cost first, the top ones verified")
    parser.add_argument("--summary", metavar="JSON",
                        help="write the answer as JSON here (- for standard output)")
    parser.add_argument("--json", dest="summary", help=argparse.SUPPRESS)  # older spelling
    parser.add_argument("--simulate-only", action="store_true",
                        help="with --simulate: no real runs to confirm the boundary")


def cmd_fit(args: argparse.Namespace) -> int:
    from .outputs import human_stream, write_json

    with contextlib.redirect_stdout(human_stream(args.summary)):
        code, answer = _fit(args)
    if answer is not None and args.summary:
        write_json(args.summary, answer, indent=1)
    return code


def _fit(args: argparse.Namespace) -> tuple[int, dict | None]:
    """The search, its table printed; the exit code and the answer for ``--summary``."""
    from ..compare.fit import rank_sets, search_for

    try:
        limit = parse_size(args.limit)
        base = spec_from_args(args)
    except SpecError as exc:
        print(f"memviz fit: {exc}", file=sys.stderr)
        return 2, None
    dimension = "batch_size" if args.search == "batch" else "seq_len"

    def heard(probe) -> None:
        verdict = "fits" if probe.fits else f"does not fit ({probe.message})"
        word = "simulated" if base.simulate else "predicted"
        if probe.peak_bytes is None:  # a simulation's probe
            figures = f"simulated {human_bytes(probe.predicted_bytes)}"
        else:
            figures = f"peak {human_bytes(probe.peak_bytes)}" + (
                "" if probe.predicted_bytes is None
                else f", {word} {human_bytes(probe.predicted_bytes)}")
        took = "" if probe.seconds is None else \
            f" ({probe.seconds:.1f} s, {probe.outside_steps:.1f} s outside its steps)"
        print(f"  {dimension} {probe.value}: {figures}: {verdict}{took}", file=sys.stderr,
              flush=True)

    search = search_for(base, limit, dimension, on_probe=heard,
                        confirm=not args.simulate_only)
    result = search.run()
    timed = [p for p in result.probes if p.seconds is not None]
    if timed:
        outside = sorted(p.outside_steps or 0.0 for p in timed)
        print(f"  {len(timed)} probes in {sum(p.seconds or 0.0 for p in timed):.1f} s; outside "
              f"their steps {outside[len(outside) // 2]:.1f} s each (median), "
              f"{outside[-1]:.1f} s at most", file=sys.stderr)
    answer: dict = {"fit": result.to_dict()}
    if args.rank_sets:
        overhead = result.overhead_bytes or 0
        ranked = rank_sets(base, limit, overhead)
        rows = [[r.technique_set.name, human_bytes(r.predicted_bytes), f"{r.step_factor:.2f}×",
                 "—" if r.verified is None else ("fits" if r.verified.fits else "does not fit")
                 + f" ({human_bytes(r.verified.peak_bytes)})", r.quality] for r in ranked]
        print(table(["set", "predicted peak", "expected time", "verified", "expected quality cost"],
                    rows, numbers=False))
        answer["sets"] = [{"name": r.technique_set.name, "predicted_bytes": r.predicted_bytes,
                           "step_factor": r.step_factor, "quality": r.quality,
                           "verified": None if r.verified is None else r.verified.__dict__}
                          for r in ranked]
    elif result.largest is None:
        print(f"Even {dimension} 1 does not fit under {human_bytes(limit)}: "
              f"{result.probes[0].message if result.probes else ''}")
    else:
        refused = "" if result.refused is None else f"; {result.refused} did not"
        if base.simulate:
            how = " (simulated, confirmed by real runs)" if getattr(search, "confirmed", None) \
                else " (simulated; not confirmed: " + ("asked not to)" if args.simulate_only
                                                     else f"no {base.device} here)")
        else:
            how = "" if result.predicted is None else \
                f" (the estimator said {result.predicted})"
        print(f"Largest {dimension} under {human_bytes(limit)}: {result.largest}"
              f"{refused}{how}")
    return (0 if result.largest is not None else 1), answer
