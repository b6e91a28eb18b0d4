"""Runnable example applications; ``python -m examples.app`` serves the notes service."""
