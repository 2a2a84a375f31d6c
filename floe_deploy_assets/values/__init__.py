"""The logic layer for Helm values: layering with provenance, the CompiledArtifacts mapping,
the chart values models and their schemas, and the secret rules. No Dagster imports."""
