"""Runs that come from outside the window: a user's program that connects to it
(File → Wait for a program…) and a worker someone started elsewhere (File → Attach to
a worker…). Both speak the authenticated handshake; both become ordinary runs."""

from __future__ import annotations

import threading

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from ..core.run import Run
from ..core.text import printable
from ..program.inject import python_processes
from ..session.attach import AttachedSession
from ..session.listener import ProgramListener


class WaitDialog(QDialog):
    """The command to paste, and how many programs have connected."""

    def __init__(self, listener: ProgramListener, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Wait for a program")
        self.command = QLineEdit(listener.command())
        self.command.setReadOnly(True)
        self.command.setMinimumWidth(640)
        self.command.setToolTip("Run this in a terminal on this machine, with your own "
                                "script and its arguments after --. The token in it lets "
                                "only that program in")
        copy = QPushButton("Copy")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.command.text()))
        row = QHBoxLayout()
        row.addWidget(self.command, 1)
        row.addWidget(copy)
        self.status = QLabel("Waiting for a program… Its run appears in the run list, live.")
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.hide)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Profile your own script: run it with this command"))
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(close)


class AttachDialog(QDialog):
    """Where a worker waits (``memviz worker --listen``) and its token."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Attach to a worker")
        self.where = QLineEdit("tcp:127.0.0.1:7341")
        self.where.setToolTip("The address the worker prints: memviz worker --listen ADDR "
                              "(through an SSH tunnel for another machine)")
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setToolTip("The worker's MEMVIZ_TOKEN; it never travels: both sides prove "
                              "they know it")
        form = QFormLayout()
        form.addRow("Address", self.where)
        form.addRow("Token", self.token)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("The run panel's workload runs on that worker"))
        layout.addLayout(form)
        layout.addWidget(buttons)


class AttachProcessDialog(QDialog):
    """Which running Python program to track, by its process id."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Attach to a process")
        self.process = QComboBox()
        self.process.setEditable(True)
        self.process.setMinimumWidth(640)
        for pid, command in python_processes():
            self.process.addItem(f"{pid}  {printable(command, one_line=True)[:120]}", pid)
        self.process.setToolTip("A Python program of yours that is running (its process "
                                "id, or pick one); its tensors are tracked from now on")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Track a running program from now on: what it holds already "
                                "is shown as existing, by category"))
        layout.addWidget(self.process)
        layout.addWidget(buttons)

    def pid(self) -> int | None:
        text = self.process.currentText().strip().split(" ", 1)[0]
        return int(text) if text.isdigit() else None


class ExternalRuns:
    """Owns the listener for programs; hands each arrival to the window."""

    def __init__(self, window) -> None:
        self.window = window
        self.listener: ProgramListener | None = None
        self.dialog: WaitDialog | None = None
        self.connected = 0
        self._attach_errors: list[str] = []

    def _listening(self) -> ProgramListener:
        if self.listener is None:
            self.listener = ProgramListener(next_run_id=self.window.new_run_id,
                                            recorder_for=self.window._recorder_for)
            self.dialog = WaitDialog(self.listener, self.window)
        return self.listener

    def wait_for_programs(self) -> ProgramListener:
        self._listening()
        self.dialog.show()
        self.dialog.raise_()
        return self.listener

    def attach_process(self, pid: int) -> threading.Thread | None:
        """Track process ``pid`` from now on, streaming here: the run joins the list when
        its tracking has started (in the background: a long step delays it)."""
        from ..program.attach import Attachment
        from ..program.inject import InjectError

        self.window.error_banner.user_acted()
        listener = self._listening()
        try:
            attachment = Attachment(pid, connect=str(listener.address), token=listener.token)
        except InjectError as exc:
            self.window.error_banner.action_error(f"Cannot attach: {exc}")
            return None

        def start() -> None:
            try:
                attachment.start()
            except InjectError as exc:
                self._attach_errors.append(str(exc))
            finally:
                attachment.close()

        self.window.state_label.setText(f"Attaching to process {pid}…")
        thread = threading.Thread(target=start, daemon=True, name="memviz-attach")
        thread.start()
        return thread

    def attach_process_dialog(self) -> None:
        dialog = AttachProcessDialog(self.window)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            pid = dialog.pid()
            if pid is None:
                self.window.error_banner.action_error("Cannot attach: give a process id")
            else:
                self.attach_process(pid)

    def poll(self) -> None:
        while self._attach_errors:  # from an attachment's thread, shown here
            self.window.error_banner.action_error(
                f"Cannot attach: {self._attach_errors.pop(0)}")
        if self.listener is None:
            return
        for session in self.listener.take_arrivals():
            self.connected += 1
            self.window.adopt(session.run, session)
            self.window.state_label.setText(
                f"Program connected: {session.run.spec.program or session.run.spec.model}")
        if self.dialog is not None:
            self.dialog.status.setText(
                f"{self.connected} program(s) connected; waiting for more. Each run is in "
                "the run list, live." if self.connected else self.dialog.status.text())

    def attach(self, where: str, token: str) -> Run | None:
        """Run the run panel's workload on the worker waiting at ``where``."""
        return self.window.start_run(session_for=lambda run, cap: AttachedSession(
            run, where, token, recorder=self.window._recorder_for(run), memory_cap=cap))

    def attach_dialog(self) -> None:
        dialog = AttachDialog(self.window)
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.attach(dialog.where.text().strip(), dialog.token.text().strip())

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
