"""The domain layer: the seed data model's entities, the deployment configuration and the
CompiledArtifacts input, as pydantic models. Nothing here imports Dagster, Kubernetes or Helm."""
