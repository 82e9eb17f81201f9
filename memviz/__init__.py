"""memviz: where the memory of a language model goes, measured live."""

__version__ = "0.1.0"
