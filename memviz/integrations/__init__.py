"""Callbacks for training frameworks, each importable only where its framework is."""
