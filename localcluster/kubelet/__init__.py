"""A simulated kubelet: nodes, pod status, container logs and a volume provisioner.

See ``localcluster/kubelet/behaviour.py`` for the annotations that choose a pod's fault.
"""
