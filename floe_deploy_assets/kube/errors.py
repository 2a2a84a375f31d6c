"""A failed Kubernetes call, said in one line with where it happened: the step, the release,
its namespace and the cluster (the kubeconfig context), and the cause."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from kubernetes.client.exceptions import ApiException
from urllib3 import exceptions as urllib3_errors

from floe_deploy_assets.kube.retry import RetryDeadlineError, describe

# What a Kubernetes call of ours raises when the API server refused, failed or did not answer.
CLUSTER_FAILURES: tuple[type[BaseException], ...] = (
    ApiException,
    urllib3_errors.HTTPError,
    RetryDeadlineError,
    ConnectionError,
    TimeoutError,
)


class ClusterCallError(RuntimeError):
    """``step`` for ``where`` (a release, namespace and cluster) failed because of ``cause``."""

    def __init__(self, step: str, where: str, cause: BaseException):
        super().__init__(f"{step} for {where} failed: {describe(cause)}")
        self.step, self.where, self.cause = step, where, cause


@contextmanager
def cluster_step(step: str, where: object) -> Iterator[None]:
    """Turn a failed Kubernetes call inside the block into ``ClusterCallError`` naming
    ``step`` and ``where`` (its ``str``: ``ReleaseRef`` names release, namespace and
    cluster)."""
    try:
        yield
    except CLUSTER_FAILURES as error:
        raise ClusterCallError(step, str(where), error) from error
