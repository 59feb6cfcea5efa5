"""Monitoring service: the predictions store, filled by the ingest pool in workers/ingest.py
(manifest: service.py). Its API and analytics come with the monitoring issue."""
