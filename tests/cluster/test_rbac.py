"""RBAC is really enforced: a ServiceAccount may do only what a RoleBinding grants."""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client, config

from localcluster.kubeconfig import mint_service_account_kubeconfig
from tests.conftest import KubeCluster
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster


def _client_as(kube_cluster: KubeCluster, namespace: str, account: str) -> client.CoreV1Api:
    document = mint_service_account_kubeconfig(kube_cluster.kubeconfig, namespace, account)
    return client.CoreV1Api(config.new_client_from_config_dict(yaml.safe_load(document)))


@pytest.fixture
def service_account(kube_cluster: KubeCluster, namespace: str) -> str:
    kube_cluster.core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    return "robot"


def test_service_account_without_binding_is_forbidden(
    kube_cluster: KubeCluster, namespace: str, service_account: str
):
    robot = _client_as(kube_cluster, namespace, service_account)

    with pytest.raises(client.ApiException) as denied:
        robot.list_namespaced_pod(namespace)

    assert denied.value.status == 403
    assert f"system:serviceaccount:{namespace}:robot" in denied.value.body


def test_role_binding_grants_exactly_its_rules(
    kube_cluster: KubeCluster, namespace: str, service_account: str
):
    rbac = client.RbacAuthorizationV1Api(kube_cluster.api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "robot-reads-pods"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": service_account, "namespace": namespace}
            ],
        },
    )
    robot = _client_as(kube_cluster, namespace, service_account)

    def can_list_pods() -> bool:
        try:
            return robot.list_namespaced_pod(namespace).items == []
        except client.ApiException as exc:
            if exc.status == 403:
                return False
            raise

    wait_for(can_list_pods, timeout=10, reason="the RoleBinding to take effect")
    with pytest.raises(client.ApiException) as denied:
        robot.list_namespaced_secret(namespace)
    assert denied.value.status == 403
