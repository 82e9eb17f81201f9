"""The form where a user picks model, workload and options."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.categories import TRACK_LEVELS
from ..core.spec import DATA_SOURCES, MODES, OPTIMIZERS, PRESETS, RunSpec
from ..session.memory_cap import DEFAULT_SHARE, MemoryCap, parse_cap
from .technique_panel import TechniquePanel


def _spin(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box


class RunPanel(QWidget):
    run_clicked = Signal()
    stop_clicked = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        d = RunSpec()
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.addItems(PRESETS)
        self.model.setToolTip("A preset, a Hugging Face model directory, or a factory "
                              "(package.module:function or path/to/file.py:function)")
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose a local Hugging Face model directory")
        browse.clicked.connect(self._browse)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(browse)

        self.mode = QComboBox()
        self.mode.addItems(MODES)
        self.batch_size = _spin(1, 65536, d.batch_size)
        self.seq_len = _spin(2, 1 << 20, d.seq_len)
        self.steps = _spin(1, 1 << 24, d.steps)
        self.optimizer = QComboBox()
        self.optimizer.addItems(OPTIMIZERS)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 10.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(d.lr)
        self.device = QComboBox()
        self.device.setEditable(True)
        self.device.addItems(["cpu", "cuda", "cuda:0", "cuda:1"])
        self.seed = _spin(0, 2**31 - 1, d.seed)
        self.data = QComboBox()
        self.data.addItems(DATA_SOURCES)
        self.max_new_tokens = _spin(1, 65536, d.max_new_tokens)
        self.sample_hz = _spin(1, 100, int(d.sample_hz))
        self.track = QComboBox()
        self.track.addItems(TRACK_LEVELS)
        self.track.setCurrentText(d.track)
        self.track.setToolTip("samples: memory counters only; tensors: every allocation, "
                              "categorised; tensors+stacks (the default): with the Python "
                              "stack of each allocation on the steps every op is tracked on")
        self.simulate = QCheckBox("on fake tensors (no data, no arithmetic)")
        self.simulate.setToolTip(
            "Simulate: the real step on fake tensors, every tensor and op counted, nothing "
            "allocated for data. A model too large for this machine, or --device cuda "
            "without a GPU (CUDA's caching allocator modelled)")
        self.memory_cap = QComboBox()
        self.memory_cap.setEditable(True)
        self.memory_cap.addItems(["auto", "none", "2GiB", "8GiB", "32GiB"])
        self.memory_cap.setToolTip(
            "Stop the run when its memory passes this: RSS on CPU, GPU memory on CUDA. "
            f"auto: {DEFAULT_SHARE:.0%} of the memory available when the run starts; "
            "none: no cap. A run stopped at its cap keeps everything measured up to then")

        form = QFormLayout()
        form.addRow("Model", model_row)
        form.addRow("Workload", self.mode)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Sequence length", self.seq_len)
        form.addRow("Steps", self.steps)
        form.addRow("Optimizer", self.optimizer)
        form.addRow("Learning rate", self.lr)
        form.addRow("New tokens", self.max_new_tokens)
        form.addRow("Device", self.device)
        form.addRow("Data", self.data)
        form.addRow("Seed", self.seed)
        form.addRow("Samples / s", self.sample_hz)
        form.addRow("Tracking", self.track)
        form.addRow("Memory cap", self.memory_cap)
        form.addRow("Simulate", self.simulate)
        group = QGroupBox("Run")
        group.setLayout(form)
        self.technique_panel = TechniquePanel()
        self.technique_panel.setToolTip("Memory techniques to apply; hover one for what it does")
        techniques_box = QGroupBox("Techniques")
        QVBoxLayout(techniques_box).addWidget(self.technique_panel)

        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.run_clicked)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop_clicked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.stop_button)

        # the user sizes form and techniques; the form scrolls, so the techniques can take
        # the height on a small screen
        form_area = QScrollArea()
        form_area.setWidget(group)
        form_area.setWidgetResizable(True)
        form_area.setFrameShape(QFrame.Shape.NoFrame)
        form_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        form_area.setMinimumHeight(120)
        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.addWidget(form_area)
        self.split.addWidget(techniques_box)
        self.split.setChildrenCollapsible(False)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.split, 1)
        layout.addLayout(buttons)
        self.mode.currentTextChanged.connect(self._mode_changed)
        self.device.currentTextChanged.connect(self._refresh_techniques)
        self.model.currentTextChanged.connect(self._refresh_techniques)
        self.batch_size.valueChanged.connect(self._refresh_techniques)
        self.steps.valueChanged.connect(self._refresh_techniques)
        self._mode_changed(self.mode.currentText())

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Hugging Face model directory")
        if path:
            self.model.setEditText(path)

    def _mode_changed(self, mode: str) -> None:
        self.optimizer.setEnabled(mode == "train")
        self.lr.setEnabled(mode == "train")
        self.max_new_tokens.setEnabled(mode == "generate")
        self._refresh_techniques()

    def _refresh_techniques(self, *_args) -> None:
        spec = self.spec()
        if spec.device.partition(":")[0] in ("cpu", "cuda"):
            self.technique_panel.update_applicability(spec)

    def spec(self) -> RunSpec:
        """The spec the form describes (validated by the caller)."""
        return RunSpec(
            model=self.model.currentText().strip(), mode=self.mode.currentText(),
            batch_size=self.batch_size.value(), seq_len=self.seq_len.value(),
            steps=self.steps.value(), optimizer=self.optimizer.currentText(),
            lr=self.lr.value(), device=self.device.currentText().strip(),
            seed=self.seed.value(), data=self.data.currentText(),
            max_new_tokens=self.max_new_tokens.value(), sample_hz=float(self.sample_hz.value()),
            track=self.track.currentText(),
            techniques=self.technique_panel.techniques(), simulate=self.simulate.isChecked(),
        )

    def cap(self) -> MemoryCap:
        """The memory cap the form asks for (SpecError if it is not a size)."""
        return parse_cap(self.memory_cap.currentText(), self.device.currentText().strip())

    def set_running(self, running: bool, stopping: bool = False) -> None:
        """``stopping``: asked to stop once: the button now ends the run at once."""
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.stop_button.setText("Stop at once" if stopping else "Stop")
