"""The data model shared by every side: run specs, runs, summaries. No Qt, no torch."""
