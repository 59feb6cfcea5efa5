"""Modelyard's user-side package: the Python client (`modelyard.client`) and the `modelyard` command (`modelyard.cli`)."""
