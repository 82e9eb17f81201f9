"""``memviz techniques``: every technique, what it does, where it applies, its parameters."""

from __future__ import annotations

import argparse
import json

from ..techniques import GROUPS, TECHNIQUES
from .formatting import table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def catalogue() -> list[dict]:
    return [{
        "name": t.name, "group": t.group, "description": t.description,
        "modes": sorted(t.modes), "devices": sorted(t.devices),
        "params": [{"name": p.name, "type": p.kind.__name__, "default": p.default,
                    "help": p.help, "choices": list(p.choices), "low": p.low, "high": p.high}
                   for p in t.params],
        "conflicts": sorted(t.conflicts),
    } for t in sorted(TECHNIQUES.values(), key=lambda t: (GROUPS.index(t.group), t.name))]


def cmd_techniques(args: argparse.Namespace) -> int:
    entries = catalogue()
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    rows = [[e["name"], e["group"], "/".join(e["modes"]), "/".join(e["devices"]),
             " ".join(p["name"] + "=" + str(p["default"]) for p in e["params"]) or "—",
             e["description"]] for e in entries]
    print(table(["technique", "group", "modes", "devices", "parameters (defaults)",
                 "what it does"], rows, numbers=False))
    print("\nUse: memviz run --technique NAME[:key=value,...] (repeatable); "
          "optimizers: --optimizer adamw|sgd|sgd-momentum|adafactor|adamw-8bit|adamw-4bit")
    return 0
