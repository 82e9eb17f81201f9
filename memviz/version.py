"""memviz's version and its name on the package index: a leaf every layer may import."""

__version__ = "0.1.0"

# "memviz" on the package index is an unrelated project; the import package and the
# command are memviz, the distribution is this.
DISTRIBUTION = "memviz-profiler"
