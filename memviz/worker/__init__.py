"""The worker process: loads a model, runs it, streams measurements. Never imports Qt."""
