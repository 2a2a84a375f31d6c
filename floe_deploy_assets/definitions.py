"""The Dagster code location (``workspace.yaml`` loads ``defs``).

``FLOE_DEPLOY_CONFIG`` names the deployment configuration (default ``floe-deploy.yaml`` in the
working directory); ``FLOE_KUBECONFIG`` the kubeconfig whose contexts the cluster mappings name
(default: $KUBECONFIG or ~/.kube/config).
"""

import os

from floe_deploy_assets.defs.build import build_definitions

defs = build_definitions(
    os.environ.get("FLOE_DEPLOY_CONFIG", "floe-deploy.yaml"),
    kubeconfig=os.environ.get("FLOE_KUBECONFIG") or None,
)
