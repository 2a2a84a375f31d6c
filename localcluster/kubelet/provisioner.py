"""A default StorageClass and a provisioner for it, so claims bind and StatefulSets schedule.

A claim of class ``standard`` gets a directory of its own under the cluster's volumes directory
and a ``hostPath`` PersistentVolume for it with a ``claimRef``; the real PV controller binds the
two. A simulated node stores nothing in it; a real node's kubelet mounts it, so what a pod
writes outlives the pod (every real node is on this machine, so no node affinity is needed). The
directory is open to every user, as local-path provisioners make theirs: a pod running as any
user can write to its volume. A released volume we provisioned is deleted, directory and all,
as its reclaim policy says.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)
STORAGE_CLASS = "standard"
PROVISIONER = "localcluster.floe.dev/simulated"


def ensure_storage_class(storage: client.StorageV1Api) -> None:
    body = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }
    try:
        storage.create_storage_class(body)
    except ApiException as exc:
        if exc.status != 409:
            raise


class Provisioner:
    def __init__(self, core: client.CoreV1Api, volumes_dir: Path):
        self.core = core
        self.volumes_dir = volumes_dir

    def on_claim(self, kind: str, claim: dict[str, Any]) -> None:
        spec, meta = claim["spec"], claim["metadata"]
        if (
            kind == "DELETED"
            or spec.get("storageClassName") != STORAGE_CLASS
            or spec.get("volumeName")
            or claim.get("status", {}).get("phase") != "Pending"
        ):
            return
        directory = self.volumes_dir / meta["uid"]
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o777)  # not the umask's: any pod user writes to its own volume
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": f"pvc-{meta['uid']}",
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            },
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "volumeMode": spec.get("volumeMode", "Filesystem"),
                "hostPath": {"path": str(directory), "type": "Directory"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            self.core.create_persistent_volume(volume)
        except ApiException as exc:
            if exc.status != 409:
                log.warning("provisioning %s/%s: %s", meta["namespace"], meta["name"], exc.reason)

    def on_volume(self, kind: str, volume: dict[str, Any]) -> None:
        meta = volume["metadata"]
        ours = (meta.get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") == PROVISIONER
        released = volume.get("status", {}).get("phase") == "Released"
        if kind != "DELETED" and ours and released:
            try:
                self.core.delete_persistent_volume(meta["name"])
            except ApiException as exc:
                if exc.status != 404:
                    log.warning("deleting released volume %s: %s", meta["name"], exc.reason)
                    return
            path = Path((volume["spec"].get("hostPath") or {}).get("path", ""))
            if path.parent == self.volumes_dir:  # only what this provisioner made
                shutil.rmtree(path, ignore_errors=True)
