"""Registry tables: models, versions, aliases, datasets, artifacts, lineage (being built)."""
