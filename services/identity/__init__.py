"""Identity service: tokens, users and roles, API keys, and the audit log's read side (manifest: service.py)."""
