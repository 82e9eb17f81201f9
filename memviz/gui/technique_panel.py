"""The technique checklist: grouped as practitioners group them, with parameters.

Each technique is a checkable row (its description as a tooltip); its
parameters are child rows with an editor. A technique that does not apply to
the chosen workload or device is greyed and says why; the registry checks the
whole set again when the run starts.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLineEdit,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QWidget,
)

from ..core.spec import RunSpec
from ..techniques import GROUPS, TECHNIQUES, Param, applicability
from ..techniques.model_notes import structure_note

NAME_ROLE = Qt.ItemDataRole.UserRole


class _ScrollsPast:
    """A setting's editor the mouse wheel scrolls past: only a click (focus) and then
    the wheel or the keys change it, so scrolling the list never edits a setting."""

    def wheelEvent(self, event) -> None:
        if self.hasFocus():
            super().wheelEvent(event)
        else:
            event.ignore()  # to the list, which scrolls


class _Combo(_ScrollsPast, QComboBox):
    pass


class _Spin(_ScrollsPast, QSpinBox):
    pass


class _DoubleSpin(_ScrollsPast, QDoubleSpinBox):
    pass


def _editor(param: Param) -> QWidget:
    editor = _new_editor(param)
    editor.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # not the wheel's focus
    return editor


def _new_editor(param: Param) -> QWidget:
    if param.choices:
        box = _Combo()
        box.addItems([str(c) for c in param.choices])
        box.setCurrentText(str(param.default))
        return box
    if param.kind is bool:
        check = QCheckBox()
        check.setChecked(bool(param.default))
        return check
    if param.kind is int:
        spin = _Spin()
        spin.setRange(int(param.low if param.low is not None else -(2**31)),
                      int(min(param.high if param.high is not None else 2**31 - 1, 2**31 - 1)))
        spin.setValue(int(param.default))
        return spin
    if param.kind is float:
        spin = _DoubleSpin()
        spin.setDecimals(3)
        spin.setSingleStep(0.05)
        spin.setRange(param.low if param.low is not None else -1e9,
                      param.high if param.high is not None else 1e9)
        spin.setValue(float(param.default))
        return spin
    line = QLineEdit(str(param.default))
    return line


def _value(param: Param, editor: QWidget) -> Any:
    if isinstance(editor, QComboBox):
        return param.kind(editor.currentText())
    if isinstance(editor, QCheckBox):
        return editor.isChecked()
    if isinstance(editor, QSpinBox | QDoubleSpinBox):
        return param.kind(editor.value())
    return editor.text().strip()


class TechniquePanel(QTreeWidget):
    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setColumnCount(2)
        self.setHeaderLabels(["Technique", "Setting"])
        self.setRootIsDecorated(True)
        self._items: dict[str, QTreeWidgetItem] = {}
        self._editors: dict[str, dict[str, tuple[Param, QWidget]]] = {}
        for group in GROUPS:
            top = QTreeWidgetItem(self, [group.capitalize()])
            top.setFlags(Qt.ItemFlag.ItemIsEnabled)
            font = top.font(0)
            font.setBold(True)
            top.setFont(0, font)
            for technique in sorted((t for t in TECHNIQUES.values() if t.group == group),
                                    key=lambda t: t.name):
                item = QTreeWidgetItem(top, [technique.name, ""])
                item.setData(0, NAME_ROLE, technique.name)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable
                              | Qt.ItemFlag.ItemIsSelectable)
                item.setCheckState(0, Qt.CheckState.Unchecked)
                item.setToolTip(0, technique.description)
                self._items[technique.name] = item
                self._editors[technique.name] = {}
                for param in technique.params:
                    row = QTreeWidgetItem(item, [param.name])
                    row.setToolTip(0, param.help)
                    editor = _editor(param)
                    editor.setToolTip(param.help)
                    self.setItemWidget(row, 1, editor)
                    self._editors[technique.name][param.name] = (param, editor)
            top.setExpanded(True)
        self.setColumnWidth(0, 170)
        self.itemChanged.connect(self._item_changed)
        self._spec: RunSpec | None = None
        self._structures: dict[str, dict] = {}  # model name -> what its run said of it

    def _item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if column == 0 and item.data(0, NAME_ROLE):
            item.setExpanded(item.checkState(0) == Qt.CheckState.Checked)
            if self._spec is not None:  # what applies depends on what else is ticked
                self.update_applicability(self._spec)
            self.changed.emit()

    def set_structure(self, model: str, structure: dict) -> None:
        """What a loaded ``model`` allows (from a run's model summary)."""
        if self._structures.get(model) != structure:
            self._structures[model] = structure
            if self._spec is not None:
                self.update_applicability(self._spec)

    def set_checked(self, name: str, checked: bool = True, **params: Any) -> None:
        self._items[name].setCheckState(
            0, Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        for key, value in params.items():
            _param, editor = self._editors[name][key]
            if isinstance(editor, QComboBox):
                editor.setCurrentText(str(value))
            elif isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QSpinBox | QDoubleSpinBox):
                editor.setValue(value)
            else:
                editor.setText(str(value))

    def techniques(self) -> list[dict[str, Any]]:
        """The checked techniques with the parameters that differ from their defaults."""
        chosen = []
        for name, item in self._items.items():
            if item.checkState(0) != Qt.CheckState.Checked:
                continue
            params = {}
            for key, (param, editor) in self._editors[name].items():
                value = _value(param, editor)
                if value != param.default:
                    params[key] = value
            chosen.append({"name": name, "params": params})
        return chosen

    def update_applicability(self, spec: RunSpec) -> None:
        """Grey out, and say why, what does not apply to this workload, device, the other
        ticked techniques, and (once a run has loaded it) this model's structure."""
        self._spec = spec
        ticked = {n for n, item in self._items.items()
                  if item.checkState(0) == Qt.CheckState.Checked}
        structure = self._structures.get(spec.model)
        self.blockSignals(True)
        for name, item in self._items.items():
            reason = applicability(TECHNIQUES[name], spec, ticked | {name})
            note = ""
            if structure is not None and not reason:
                applies, note = structure_note(name, structure)
                reason = None if applies else note
            item.setText(1, f"({reason})" if reason else "")
            item.setForeground(0, self.palette().placeholderText() if reason
                               else self.palette().text())
            item.setToolTip(1, reason or (f"On {spec.model}: {note}" if note else ""))
            item.setToolTip(0, TECHNIQUES[name].description +
                            (f"\nOn {spec.model}: {note}" if note else ""))
            self._grey_choices(name, spec, ticked | {name})
        self.blockSignals(False)

    def _grey_choices(self, name: str, spec: RunSpec, ticked: set[str]) -> None:
        """A setting's choice this workload refuses (fp16 autocast on a CPU) is greyed
        with the reason, before Run refuses it; a refused current choice goes back to
        the default."""
        technique = TECHNIQUES[name]
        defaults = {p.name: p.default for p in technique.params}
        for key, (param, editor) in self._editors[name].items():
            if not isinstance(editor, QComboBox):
                continue
            model = editor.model()
            for index, choice in enumerate(param.choices or ()):
                reason = technique.refusal(spec, {**defaults, key: choice}, ticked)
                model.item(index).setEnabled(reason is None)
                editor.setItemData(index, reason or param.help, Qt.ItemDataRole.ToolTipRole)
                if reason and editor.currentIndex() == index:
                    editor.setCurrentText(str(param.default))
