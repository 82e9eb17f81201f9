"""Module names in a narrow column keep the tail that tells them apart: never two rows
that read the same, the full name in the tooltip."""

from __future__ import annotations

from PySide6.QtWidgets import QStyleOptionViewItem, QTableWidgetItem

from memviz.gui.dotted_names import distinguishing_tails, shortened

LORA = [f"base_model.model.transformer.h.{i}.attn.c_attn.lora_dropout.default"
        for i in range(4)]
ACTS = [f"transformer.h.{i}.mlp.act" for i in range(3)]


def test_each_name_keeps_the_segments_no_other_name_ends_with():
    keep = distinguishing_tails([*ACTS, "transformer.h.0.attn", "lm_head"])
    assert keep["transformer.h.1.mlp.act"] == 3  # "1.mlp.act" is its own; "mlp.act" is not
    assert keep["lm_head"] == 1
    assert keep["transformer.h.0.attn"] == 1


def test_a_name_is_shortened_by_whole_segments_from_the_front():
    def fits(text: str) -> bool:
        return len(text) <= 14

    assert shortened("transformer.h.1.mlp.act", fits, keep=4) == "…h.1.mlp.act"
    assert shortened("lm_head", fits) == "lm_head"
    assert shortened("transformer.h.1.mlp.act", lambda t: len(t) <= 5, keep=4) is None


def test_the_diffs_module_column_never_shows_two_rows_alike(qtbot):
    """In the real Diff view's module table, a window 560 px wide: every LoRA dropout
    and every MLP activation reads differently, each ending with its own name."""
    from memviz.gui.app import make_app
    from memviz.gui.diff_view import DiffView

    make_app()
    view = DiffView()
    qtbot.addWidget(view)
    table = view.tables["modules"]
    names = [*LORA, *ACTS]
    view.names["modules"].set_names(names)
    table.setRowCount(len(names))
    for i, name in enumerate(names):
        item = QTableWidgetItem(name)
        item.setToolTip(name)
        table.setItem(i, 0, item)
    view.resize(560, 400)
    view.show()
    qtbot.waitExposed(view)
    shown = []
    for i in range(len(names)):
        option = QStyleOptionViewItem()
        option.initFrom(table)
        option.rect = table.visualRect(table.model().index(i, 0))
        view.names["modules"].initStyleOption(option, table.model().index(i, 0))
        shown.append(option.text)
    assert len(set(shown)) == len(names), shown
    for name, text in zip(names, shown, strict=True):
        assert name.endswith(text.rsplit("…", 1)[-1])  # what shows after "…" is its end
        assert option.fontMetrics.horizontalAdvance(text) <= table.columnWidth(0)
    assert all(text.startswith("…") for text in shown)  # every name had to give way
    assert [text.split(".")[0].lstrip("…") for text in shown[len(LORA):]] == ["0", "1", "2"]
    assert all(table.item(i, 0).toolTip() == name for i, name in enumerate(names))
