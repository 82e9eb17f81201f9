"""A worker's imports run without the cyclic collector and what they made is frozen;
which models have transformers' modeling code imported with them."""

from __future__ import annotations

import subprocess
import sys

from memviz.models.loading import builds_transformers_model

WINDOW = """
import gc
from memviz.worker.import_gc import imports_without_collection

assert gc.isenabled() and gc.get_freeze_count() == 0
with imports_without_collection():
    assert not gc.isenabled()
    import decimal, email.parser  # noqa: F401  (modules nothing here imported yet)
assert gc.isenabled() and gc.get_freeze_count() > 0
gc.disable()  # a caller that had it off keeps it off
with imports_without_collection():
    pass
assert not gc.isenabled()
print("ok")
"""


def test_imports_run_without_the_collector_and_what_they_made_is_frozen():
    # in a process of its own: a freeze here would keep the suite's objects forever
    done = subprocess.run([sys.executable, "-c", WINDOW], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == "ok", done.stderr


def test_transformers_models_are_told_from_plain_modules(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert builds_transformers_model("gpt2-tiny") and builds_transformers_model("bert-tiny")
    assert builds_transformers_model("minilm-l6") and builds_transformers_model(str(tmp_path))
    assert not builds_transformers_model("lstm-lm")
    assert not builds_transformers_model("conv-lm")
    assert not builds_transformers_model("examples/my_model.py:build")  # may be anything
