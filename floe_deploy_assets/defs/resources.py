"""Resources: the deployment configuration, and Helm and Kubernetes access per cluster mapping
(a kubeconfig context, or the pod's own service account when running in the cluster)."""

from datetime import timedelta
from functools import cache
from pathlib import Path

import dagster as dg
from kubernetes import client
from kubernetes import config as kube_config

from floe_deploy_assets.helm.deploy import DeployPolicy
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.models.config import ChartKind, DeploymentConfig, load_deployment_config
from floe_deploy_assets.models.products import DataProduct, load_products
from floe_deploy_assets.release.decide import Remediation

DEPLOY_DEFAULTS = DeployPolicy()


@cache
def _config(path: str) -> DeploymentConfig:
    return load_deployment_config(path)


class DeploymentConfigResource(dg.ConfigurableResource):
    """The deployment configuration file (floe-deploy.yaml) and the CompiledArtifacts it names."""

    path: str = "floe-deploy.yaml"
    timeout_seconds: int = int(DEPLOY_DEFAULTS.timeout.total_seconds())  # each Helm action
    remediation: str = DEPLOY_DEFAULTS.remediation.value  # rollback, retry or hold a failure
    # How long to wait while another deploy holds a release: a scheduled or sensor-started run
    # waits a minute where the command line fails at once.
    lock_wait_seconds: int = 60

    def policy(self) -> DeployPolicy:
        return DeployPolicy(
            remediation=Remediation(self.remediation),
            timeout=timedelta(seconds=self.timeout_seconds),
            lock_wait=timedelta(seconds=self.lock_wait_seconds),
        )

    @property
    def config(self) -> DeploymentConfig:
        return _config(self.path)

    def products(self) -> list[DataProduct]:
        """The data products, read again at each call: a recompiled document is used by the
        next run without reloading the code location."""
        return load_products(self.config)

    def release(self, chart: ChartKind, environment: str, product: str | None = None) -> ReleaseRef:
        """``product``: the slug of the product whose jobs release it is (with named products)."""
        mapping = self.config.mapping_for(environment)
        return ReleaseRef(
            self.config.release_name(chart, environment, product),
            mapping.namespace_for(environment),
            mapping.cluster,
        )


class KubernetesResource(dg.ConfigurableResource):
    """Access to the clusters the mappings name. ``in_cluster``: use the pod's service account
    (the mapping's cluster is then only a label); otherwise ``kubeconfig`` (default: $KUBECONFIG
    or ~/.kube/config) and the mapping's cluster as its context."""

    kubeconfig: str | None = None
    in_cluster: bool = False

    def cluster(self, context: str) -> ClusterAccess:
        return _cluster(self.kubeconfig, context, self.in_cluster)

    def helm(self, context: str) -> SdkHelmEngine:
        return _engine(self.kubeconfig, context, self.in_cluster)


@cache
def _cluster(kubeconfig: str | None, context: str, in_cluster: bool) -> ClusterAccess:
    if in_cluster:
        configuration = client.Configuration()
        kube_config.load_incluster_config(client_configuration=configuration)
        return ClusterAccess(client.ApiClient(configuration))
    return ClusterAccess.from_kubeconfig(Path(kubeconfig) if kubeconfig else None, context)


@cache
def _engine(kubeconfig: str | None, context: str, in_cluster: bool) -> SdkHelmEngine:
    # Helm's client falls back to the pod's service account when given no kubeconfig.
    if in_cluster:
        # The ServiceAccount's Roles are namespaced: the namespaces exist, none is created.
        return SdkHelmEngine(None, create_namespace=False)
    return SdkHelmEngine(Path(kubeconfig) if kubeconfig else None, context=context)
