"""The window. Imports Qt and pyqtgraph, never torch (a test keeps it so)."""
