"""How a simulated pod behaves, chosen per pod by annotations on its template.

Annotations (prefix ``sim.kubelet.floe.dev/``), all optional:

==========================  ==================================================================
``fault``                   ``never-ready``: runs but never passes readiness;
                            ``crash-loop``: exits after ``run-seconds`` (default 1) with
                            ``exit-code`` (default 1) and restarts with CrashLoopBackOff;
                            ``image-pull-error``: ErrImagePull, then ImagePullBackOff, forever;
                            ``oom-killed``: killed with reason OOMKilled, exit code 137, after
                            ``run-seconds`` (default 1).
``start-delay-seconds``     slow start: containers stay in ContainerCreating this long.
``run-seconds``             how long a container runs before it exits. Default: 1 s for pods
                            with ``restartPolicy`` Never or OnFailure (Job pods), forever
                            for ``Always``.
``exit-code``               the exit code when it exits (default 0). A non-zero code fails a
                            Job pod, or crash-loops an ``Always`` pod.
``logs``                    the container's log lines (newline-separated), served through
                            ``kubectl logs`` / ``read_namespaced_pod_log``.
==========================  ==================================================================

An image whose tag is ``sim-image-pull-error`` behaves like ``fault: image-pull-error``.
Init containers always complete at once; faults apply to the app containers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ANNOTATION_PREFIX = "sim.kubelet.floe.dev/"
FAULTS = ("never-ready", "crash-loop", "image-pull-error", "oom-killed")
OOM_EXIT_CODE = 137
PULL_ERROR_IMAGE_TAG = "sim-image-pull-error"


class BehaviourError(ValueError):
    """An annotation has a value the simulated kubelet does not understand."""


@dataclass(frozen=True)
class PodBehaviour:
    fault: str | None = None
    start_delay: float = 0.0
    run_seconds: float | None = None  # None: runs until deleted
    exit_code: int = 0
    logs: str | None = None

    @property
    def exits(self) -> bool:
        return self.run_seconds is not None


def _number(annotations: dict[str, str], key: str, kind: type) -> Any:
    raw = annotations.get(ANNOTATION_PREFIX + key)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError as exc:
        raise BehaviourError(
            f"annotation {ANNOTATION_PREFIX}{key}={raw!r} is not a {kind.__name__}"
        ) from exc
    if value < 0:
        raise BehaviourError(f"annotation {ANNOTATION_PREFIX}{key}={raw!r} must not be negative")
    return value


def behaviour_for(
    annotations: dict[str, str] | None, restart_policy: str, images: list[str]
) -> PodBehaviour:
    annotations = annotations or {}
    fault = annotations.get(ANNOTATION_PREFIX + "fault")
    if fault is None and any(image.endswith(":" + PULL_ERROR_IMAGE_TAG) for image in images):
        fault = "image-pull-error"
    if fault is not None and fault not in FAULTS:
        raise BehaviourError(
            f"annotation {ANNOTATION_PREFIX}fault={fault!r} is unknown; "
            f"use one of {', '.join(FAULTS)}"
        )
    run_seconds = _number(annotations, "run-seconds", float)
    exit_code = _number(annotations, "exit-code", int)
    if fault in ("crash-loop", "oom-killed"):
        run_seconds = 1.0 if run_seconds is None else run_seconds
    if fault == "crash-loop" and not exit_code:
        exit_code = 1
    if fault == "oom-killed":
        exit_code = OOM_EXIT_CODE
    if run_seconds is None and restart_policy != "Always":
        run_seconds = 1.0
    return PodBehaviour(
        fault=fault,
        start_delay=_number(annotations, "start-delay-seconds", float) or 0.0,
        run_seconds=run_seconds,
        exit_code=exit_code or 0,
        logs=annotations.get(ANNOTATION_PREFIX + "logs"),
    )
