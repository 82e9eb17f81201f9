"""Starting, watching and stopping a worker from the controller's side (GUI or CLI).

Pure Python: no Qt, no torch. The GUI polls the Run it fills on a timer.
"""

from .session import WorkerSession, worker_command

__all__ = ["WorkerSession", "worker_command"]
