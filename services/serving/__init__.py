"""Serving service: model servers that answer predictions for the live and candidate versions of each
endpoint (instances.py checks requests, window.py measures what the replica served)."""
