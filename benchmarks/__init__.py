"""Performance budgets from the design, measured. Run: ``make bench`` (python -m benchmarks)."""
