"""The REST API, shaped like Azure's Data Protection API (and the ARM resources around it)."""
