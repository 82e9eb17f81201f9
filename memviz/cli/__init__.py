"""Command line: the GUI, the headless runner and the worker share one executable."""
