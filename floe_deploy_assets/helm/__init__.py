"""The adapter over the Helm engine (helm-python-sdk: Helm v4's Go SDK, in-process)."""
