"""Static policy over every pod spec in a set of rendered manifests.

Rules (ids as reported):

- Pod Security Standards *restricted*, evaluated the way Pod Security Admission does (container
  settings override pod settings; init and ephemeral containers count): ``pss-host-namespaces``,
  ``pss-privileged``, ``pss-capabilities``, ``pss-volume-types``, ``pss-host-ports``,
  ``pss-host-process``, ``pss-selinux``, ``pss-apparmor``, ``pss-proc-mount``, ``pss-sysctls``,
  ``pss-host-probes``, ``pss-privilege-escalation``, ``pss-run-as-non-root``,
  ``pss-run-as-user``, ``pss-seccomp``. Where PSA's checks differ by Kubernetes version we take
  the strictest one from 1.28 on, so a pod that passes here is admitted by every cluster we
  target: the sysctl and SELinux allow-lists are 1.28's, the 1.34 host-probe check always
  applies, and the 1.35 relaxations for user-namespaced pods are not applied.
- Linter rules: ``resources`` (cpu/memory requests and limits), ``probes`` (readiness and
  liveness on long-running containers), ``image-tag`` (explicit tag or digest, not latest),
  ``service-account-token`` (no token automount unless the pod needs the API) and
  ``read-only-root-filesystem``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

NEEDS_API_ANNOTATION = "floe.dev/needs-kubernetes-api"
HELM_HOOK_ANNOTATION = "helm.sh/hook"

_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
_LONG_RUNNING_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"})
_CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")

_RESTRICTED_VOLUMES = frozenset(
    {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
    | {"projected", "secret"}
)
# PSA's sysctlsAllowedV1Dot27 (in force on 1.28); later versions only add names.
_SAFE_SYSCTLS = frozenset(
    {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies"}
    | {"net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}
    | {"net.ipv4.ip_local_reserved_ports"}
)
# container_engine_t is only allowed from 1.31.
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_PROFILE_TYPES = frozenset({"RuntimeDefault", "Localhost"})  # seccomp and AppArmor
_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


@dataclass(frozen=True)
class PolicyViolation:
    object: str  # "Deployment/floe-dagster-webserver"
    container: str | None  # None for pod-level settings
    rule: str
    message: str  # what to change


@dataclass(frozen=True)
class ImageRef:
    name: str
    tag: str | None
    digest: str | None


def parse_image(image: str) -> ImageRef:
    """Split an image reference; a ``:`` before the last ``/`` is a registry port, not a tag."""
    name, _, digest = image.partition("@")
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, _, tag = name.rpartition(":")
    return ImageRef(name, tag or None, digest or None)


@dataclass(frozen=True)
class _Pod:
    object: str
    kind: str
    object_meta: Mapping[str, Any]
    meta: Mapping[str, Any]  # the pod template's (for a bare Pod, its own) metadata
    spec: Mapping[str, Any]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _pods(manifests: Iterable[Any]) -> Iterator[_Pod]:
    for doc in manifests:
        if not isinstance(doc, Mapping):
            continue  # empty YAML documents load as None
        kind, meta, spec = doc.get("kind"), _map(doc.get("metadata")), _map(doc.get("spec"))
        if kind == "Pod":
            template: Mapping[str, Any] = doc
        elif kind in _TEMPLATE_KINDS:
            template = _map(spec.get("template"))
        elif kind == "CronJob":  # batch/v1 and batch/v1beta1 have the same shape
            template = _map(_map(_map(spec.get("jobTemplate")).get("spec")).get("template"))
        else:
            continue
        name = f"{kind}/{meta.get('name') or '<unnamed>'}"
        yield _Pod(name, kind, meta, _map(template.get("metadata")), _map(template.get("spec")))


def pod_specs(
    manifests: Iterable[Mapping[str, Any]],
) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """Yield (object name, pod template metadata, pod spec) for every workload in manifests."""
    for pod in _pods(manifests):
        yield pod.object, pod.meta, pod.spec


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """Yield (field, name, container) over init, regular and ephemeral containers."""
    for field in _CONTAINER_FIELDS:
        for index, item in enumerate(_list(spec.get(field))):
            container = _map(item)
            yield field, str(container.get("name") or f"{field}[{index}]"), container


_Finding = tuple[str | None, str, str]  # (container, rule, message)


def _security_context_both_levels(where: str | None, sc: Mapping[str, Any]) -> Iterator[_Finding]:
    """Settings that exist on the pod and on containers, each level checked on its own."""
    if _map(sc.get("windowsOptions")).get("hostProcess") is True:
        yield where, "pss-host-process", "remove securityContext.windowsOptions.hostProcess: true"
    selinux = _map(sc.get("seLinuxOptions"))
    if selinux.get("type", "") not in _SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
        types = ", ".join(sorted(_SELINUX_TYPES - {""}))
        yield where, "pss-selinux", f"unset seLinuxOptions user and role; type one of {types}"
    apparmor = _map(sc.get("appArmorProfile")).get("type")
    if apparmor is not None and apparmor not in _PROFILE_TYPES:
        yield where, "pss-apparmor", "set appArmorProfile.type to RuntimeDefault or Localhost"


def _pss_pod(pod: _Pod) -> Iterator[_Finding]:
    spec, sc = pod.spec, _map(pod.spec.get("securityContext"))
    shared = [
        f"{field}: true" for field in ("hostNetwork", "hostPID", "hostIPC") if spec.get(field)
    ]
    if shared:
        yield None, "pss-host-namespaces", f"remove {', '.join(shared)} (no host namespaces)"
    for volume in map(_map, _list(spec.get("volumes"))):
        bad = sorted(set(volume) - {"name"} - _RESTRICTED_VOLUMES)
        if bad:
            yield (
                None,
                "pss-volume-types",
                f"volume {volume.get('name')!r} uses {', '.join(bad)}; use emptyDir, configMap, "
                "secret, projected, persistentVolumeClaim, ephemeral or csi",
            )
    unsafe = [s.get("name") for s in map(_map, _list(sc.get("sysctls")))]
    unsafe = [name for name in unsafe if name not in _SAFE_SYSCTLS]
    if unsafe:
        yield None, "pss-sysctls", f"remove unsafe sysctls {', '.join(map(str, unsafe))}"
    if sc.get("runAsNonRoot") is False:
        yield None, "pss-run-as-non-root", "set pod securityContext.runAsNonRoot: true, not false"
    if _is_zero(sc.get("runAsUser")):
        yield None, "pss-run-as-user", "set pod securityContext.runAsUser to a non-zero UID"
    seccomp = _map(sc.get("seccompProfile")).get("type")
    if seccomp is not None and seccomp not in _PROFILE_TYPES and not _is_windows(pod):
        yield None, "pss-seccomp", f"set pod seccompProfile.type: RuntimeDefault, not {seccomp}"
    yield from _security_context_both_levels(None, sc)
    for key, value in _map(pod.meta.get("annotations")).items():
        if key.startswith(_APPARMOR_ANNOTATION) and not (
            value in ("", "runtime/default") or str(value).startswith("localhost/")
        ):
            container = key.removeprefix(_APPARMOR_ANNOTATION)
            yield container, "pss-apparmor", f"set annotation {key} to runtime/default"


def _pss_containers(pod: _Pod) -> Iterator[_Finding]:
    pod_sc = _map(pod.spec.get("securityContext"))
    pod_non_root = pod_sc.get("runAsNonRoot")
    pod_seccomp = _map(pod_sc.get("seccompProfile")).get("type")
    for _, name, container in _containers(pod.spec):
        sc = _map(container.get("securityContext"))
        if sc.get("privileged") is True:
            yield name, "pss-privileged", "remove securityContext.privileged: true"
        if any(_map(port).get("hostPort") for port in _list(container.get("ports"))):
            yield name, "pss-host-ports", "remove ports[].hostPort; expose the port with a Service"
        if sc.get("procMount") not in (None, "Default"):
            yield name, "pss-proc-mount", "remove securityContext.procMount (or set Default)"
        yield from _security_context_both_levels(name, sc)
        if _uses_host_field(container):
            yield name, "pss-host-probes", "remove host from probes and lifecycle handlers"
        # Container settings override the pod's; unset on both is a violation.
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and pod_non_root is not True):
            yield name, "pss-run-as-non-root", "set runAsNonRoot: true on the container or pod"
        if _is_zero(sc.get("runAsUser")):
            yield name, "pss-run-as-user", "set securityContext.runAsUser to a non-zero UID"
        if _is_windows(pod):
            continue  # PSA exempts Windows pods from the three Linux-only checks below
        if sc.get("allowPrivilegeEscalation") is not False:
            yield name, "pss-privilege-escalation", "set allowPrivilegeEscalation: false"
        capabilities = _map(sc.get("capabilities"))
        added = [str(cap) for cap in _list(capabilities.get("add")) if cap != "NET_BIND_SERVICE"]
        if added:
            yield name, "pss-capabilities", f"do not add {', '.join(added)} (NET_BIND_SERVICE only)"
        if "ALL" not in _list(capabilities.get("drop")):
            yield name, "pss-capabilities", 'set securityContext.capabilities.drop: ["ALL"]'
        seccomp = _map(sc.get("seccompProfile")).get("type")
        if seccomp is None and pod_seccomp is None:
            yield name, "pss-seccomp", "set seccompProfile.type: RuntimeDefault on container or pod"
        elif seccomp is not None and seccomp not in _PROFILE_TYPES:
            yield name, "pss-seccomp", f"set seccompProfile.type: RuntimeDefault, not {seccomp}"


def _is_zero(value: Any) -> bool:
    return type(value) is int and value == 0  # not False, which also equals 0


def _is_windows(pod: _Pod) -> bool:
    return _map(pod.spec.get("os")).get("name") == "windows"


def _uses_host_field(container: Mapping[str, Any]) -> bool:
    handlers = [_map(container.get(p)) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
    lifecycle = _map(container.get("lifecycle"))
    handlers += [_map(lifecycle.get(hook)) for hook in ("postStart", "preStop")]
    return any(_map(h.get(a)).get("host") for h in handlers for a in ("httpGet", "tcpSocket"))


def _is_long_running(pod: _Pod) -> bool:
    hooks = ",".join(
        str(_map(meta.get("annotations")).get(HELM_HOOK_ANNOTATION, ""))
        for meta in (pod.object_meta, pod.meta)
    )
    if any(hook.strip().startswith("test") for hook in hooks.split(",")):
        return False  # helm test pods run once and exit
    if pod.kind == "Pod":
        return pod.spec.get("restartPolicy", "Always") == "Always"
    return pod.kind in _LONG_RUNNING_KINDS


def _image_message(image: Any) -> str | None:
    if not isinstance(image, str) or not image:
        return "set an image with an explicit version tag or digest"
    ref = parse_image(image)
    if ref.digest:
        return None
    if ref.tag is None:
        return f"pin {image} to a version tag or digest (no tag means :latest)"
    if ref.tag == "latest":
        return f"replace {image} with a version tag or digest"
    return None


def _linter_containers(pod: _Pod) -> Iterator[_Finding]:
    long_running = _is_long_running(pod)
    for field, name, container in _containers(pod.spec):
        if field != "ephemeralContainers":  # the API gives ephemeral containers no resources
            resources = _map(container.get("resources"))
            missing = [
                f"resources.{kind}.{resource}"
                for kind in ("requests", "limits")
                for resource in ("cpu", "memory")
                if _map(resources.get(kind)).get(resource) in (None, "")
            ]
            if missing:
                yield name, "resources", f"set {', '.join(missing)}"
        if field == "containers" and long_running:
            probes = [p for p in ("readinessProbe", "livenessProbe") if not container.get(p)]
            if probes:
                yield name, "probes", f"add {' and '.join(probes)} (long-running container)"
        message = _image_message(container.get("image"))
        if message:
            yield name, "image-tag", message
        if _map(container.get("securityContext")).get("readOnlyRootFilesystem") is not True:
            yield (
                name,
                "read-only-root-filesystem",
                "set securityContext.readOnlyRootFilesystem: true (emptyDir for writable paths)",
            )


def _service_account_token(
    pod: _Pod, service_accounts: list[Mapping[str, Any]]
) -> Iterator[_Finding]:
    automount = pod.spec.get("automountServiceAccountToken")
    annotations = _map(pod.meta.get("annotations"))
    if automount is False or str(annotations.get(NEEDS_API_ANNOTATION)).lower() == "true":
        return
    account = pod.spec.get("serviceAccountName") or pod.spec.get("serviceAccount") or "default"
    # An explicit true on the pod spec overrides the ServiceAccount's setting.
    if automount is None and _account_disables_token(pod, account, service_accounts):
        return
    yield (
        None,
        "service-account-token",
        f"set automountServiceAccountToken: false on the pod spec (or ServiceAccount {account}),"
        f' or annotate the pod template {NEEDS_API_ANNOTATION}: "true" if it calls the API',
    )


def _account_disables_token(
    pod: _Pod, account: str, service_accounts: list[Mapping[str, Any]]
) -> bool:
    namespace = pod.object_meta.get("namespace")
    for sa in service_accounts:
        meta = _map(sa.get("metadata"))
        other = meta.get("namespace")
        # Helm-rendered objects often carry no namespace: then the name alone must match.
        if meta.get("name") == account and (not namespace or not other or namespace == other):
            return sa.get("automountServiceAccountToken") is False
    return False


def check_pod_policy(manifests: Iterable[Mapping[str, Any]]) -> list[PolicyViolation]:
    """Every violation of the rules above, sorted by object, container, rule and message."""
    docs = [doc for doc in manifests if isinstance(doc, Mapping)]
    service_accounts = [doc for doc in docs if doc.get("kind") == "ServiceAccount"]
    found: set[PolicyViolation] = set()
    for pod in _pods(docs):
        for container, rule, message in (
            *_pss_pod(pod),
            *_pss_containers(pod),
            *_linter_containers(pod),
            *_service_account_token(pod, service_accounts),
        ):
            found.add(PolicyViolation(pod.object, container, rule, message))
    return sorted(found, key=lambda v: (v.object, v.container or "", v.rule, v.message))


def policy_report(violations: Iterable[PolicyViolation]) -> str:
    """A fixed-width table: object, container ("-" for the pod), rule, and the fix."""
    rows = [(v.object, v.container or "-", v.rule, v.message) for v in violations]
    if not rows:
        return "No pod policy violations."
    table = [("OBJECT", "CONTAINER", "RULE", "FIX"), *rows]
    widths = [max(len(row[column]) for row in table) for column in range(3)]
    lines = [f"{o:<{widths[0]}}  {c:<{widths[1]}}  {r:<{widths[2]}}  {m}" for o, c, r, m in table]
    objects = len({row[0] for row in rows})
    lines.append(f"{len(rows)} violation(s) in {objects} object(s)")
    return "\n".join(lines)
