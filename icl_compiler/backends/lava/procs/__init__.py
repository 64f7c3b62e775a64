"""Custom Lava processes of the plastic attention head (one folder each, nothing but process/models)."""
