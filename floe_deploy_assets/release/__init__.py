"""Release logic: classify a release, then decide exactly one action, and say why."""
