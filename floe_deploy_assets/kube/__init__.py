"""The adapter over the Kubernetes API (the official client)."""
