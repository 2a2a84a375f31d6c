"""DataProductJobs: one Kubernetes Job per dbt model, run in dependency order.

``spec`` names and renders each model's Job from the floe-jobs chart, ``plan`` decides what may
start and what is skipped, ``pods`` reads a pod's status for faults and exits, ``watch`` follows
a run's Jobs and pods in one namespace, ``runner`` puts them together, ``cli`` is
``floe-deploy run-models``.
"""
