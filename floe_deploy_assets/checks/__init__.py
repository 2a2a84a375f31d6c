"""Static checks over rendered Kubernetes manifests (plain dicts); pure logic, no cluster access."""
