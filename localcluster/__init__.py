"""A real Kubernetes control plane on one machine, without a container runtime.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the real programs (built
once from Debian's ``kubernetes`` source package); a simulated kubelet registers nodes and writes
the pod status a kubelet would. The product (``floe_deploy_assets``) never imports this package:
it is a test bed and a demo target.
"""

from localcluster.config import ClusterConfig
from localcluster.errors import LocalClusterError

__all__ = ["ClusterConfig", "LocalClusterError"]
