"""``memviz techniques``: every technique, what it does, where it applies, its parameters."""

from __future__ import annotations

import argparse
import sys

from ..techniques import GROUPS, TECHNIQUES, resolve
from ..techniques.libraries import OPTIMIZER_LIBRARIES, missing_reason
from .formatting import table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", metavar="JSON",
                        help="write the catalogue as JSON here (- for standard output) "
                             "instead of printing the table")
    parser.add_argument("--json", action="store_const", const="-", dest="summary",
                        help=argparse.SUPPRESS)  # the older spelling of --summary -
    parser.add_argument("--model", help="also say which techniques apply to this model's "
                                        "structure (it is loaded: a preset, directory or factory)")


def catalogue() -> list[dict]:
    return [{
        "name": t.name, "group": t.group, "description": t.description,
        "modes": sorted(t.modes), "devices": sorted(t.devices),
        "params": [{"name": p.name, "type": p.kind.__name__, "default": p.default,
                    "help": p.help, "choices": list(p.choices), "low": p.low, "high": p.high}
                   for p in t.params],
        "conflicts": sorted(t.conflicts),
        "unavailable": missing_reason(t.libraries(resolve({"name": t.name})[1])),
    } for t in sorted(TECHNIQUES.values(), key=lambda t: (GROUPS.index(t.group), t.name))]


def _structure(model: str) -> dict:
    """Load ``model`` here and read its structure (what the worker sends with a run)."""
    from ..core.spec import RunSpec
    from ..models import load_task
    from ..techniques.structure import structure_of

    return structure_of(load_task(RunSpec(model=model)).model)


def cmd_techniques(args: argparse.Namespace) -> int:
    from ..techniques.model_notes import structure_note

    entries = catalogue()
    structure = None
    if args.model:
        from ..models import ModelLoadError

        try:
            structure = _structure(args.model)
        except ModelLoadError as exc:
            print(f"memviz: error: {exc}", file=sys.stderr)
            return 2
        for e in entries:
            applies, note = structure_note(e["name"], structure)
            e["on_model"] = {"applies": applies, "note": note}
    if args.summary:
        from .outputs import write_json

        write_json(args.summary, entries if structure is None else
                   {"model": args.model, "structure": structure, "techniques": entries})
        return 0
    rows = [[e["name"], e["group"], "/".join(e["modes"]), "/".join(e["devices"]),
             " ".join(p["name"] + "=" + str(p["default"]) for p in e["params"]) or "—",
             e["description"] + (f" (unavailable: {e['unavailable']})" if e["unavailable"]
                                 else "")] for e in entries]
    headers = ["technique", "group", "modes", "devices", "parameters (defaults)", "what it does"]
    if structure is not None:
        headers.append(f"on {args.model}")
        for row, e in zip(rows, entries, strict=True):
            on = e["on_model"]
            row.append(("yes" if on["applies"] else "no") + (f": {on['note']}" if on["note"]
                                                              else ""))
    print(table(headers, rows, numbers=False))
    print("\nUse: memviz run --technique NAME[:key=value,...] (repeatable); "
          "optimizers: --optimizer adamw|sgd|sgd-momentum|adafactor|adamw-8bit|adamw-4bit")
    for optimizer, library in OPTIMIZER_LIBRARIES.items():
        reason = missing_reason({library})
        if reason:
            print(f"{optimizer} (unavailable: {reason})")
    return 0
