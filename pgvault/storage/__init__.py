"""Storage: object-store backends (datastore, restore targets) and storage accounts."""
