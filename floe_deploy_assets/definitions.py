"""The Dagster code location (``workspace.yaml`` loads ``defs``).

``FLOE_DEPLOY_CONFIG`` names the deployment configuration (default ``floe-deploy.yaml`` in the
working directory); ``FLOE_KUBECONFIG`` the kubeconfig whose contexts the cluster mappings name
(default: $KUBECONFIG or ~/.kube/config). ``FLOE_IN_CLUSTER=true``: the pod's ServiceAccount
instead, as the floe-platform chart sets it when the graph runs there (``dagster.floeDeploy``).

A broken configuration, CompiledArtifacts document or chart path fails loading with the one-line
message ``floe-deploy`` prints for it, and no stack trace: bad input is not a bug in this code.
Dagster turns an exception raised while loading into an error with the traceback, and prints and
shows that; the exception it takes as already serialized (the error of a user-code process,
which Dagster hoists as it is: ``serializable_error_info_from_exc_info``) is kept with no stack
when it has none. So the input errors are re-raised as that, with the message only.
"""

import os

import dagster as dg

from floe_deploy_assets.defs.build import build_definitions
from floe_deploy_assets.models.artifacts import ArtifactsError
from floe_deploy_assets.models.config import ConfigError


def _bad_input(error: ConfigError | ArtifactsError) -> Exception:
    try:
        from dagster._core.errors import DagsterUserCodeProcessError
        from dagster._utils.error import SerializableErrorInfo
    except ImportError:  # another Dagster: its traceback then ends with our message
        return error
    info = SerializableErrorInfo(message=f"{error}\n", stack=[], cls_name=type(error).__name__)
    return DagsterUserCodeProcessError(str(error), user_code_process_error_infos=[info])


def _load() -> dg.Definitions:
    try:
        return build_definitions(
            os.environ.get("FLOE_DEPLOY_CONFIG", "floe-deploy.yaml"),
            kubeconfig=os.environ.get("FLOE_KUBECONFIG") or None,
            in_cluster=os.environ.get("FLOE_IN_CLUSTER", "").lower() == "true",
        )
    except (ConfigError, ArtifactsError) as error:
        raise _bad_input(error) from None


defs = _load()
