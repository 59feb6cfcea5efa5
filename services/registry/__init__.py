"""Registry service: models, versions, aliases, datasets, artifacts and lineage (manifest: service.py)."""
