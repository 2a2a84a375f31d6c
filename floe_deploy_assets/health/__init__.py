"""Workload health: the seed's DeployedComponent for each workload, by Argo CD's and kstatus's
rules, strict on Jobs and Pods (failed means unhealthy), with the reason."""
