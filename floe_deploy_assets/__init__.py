"""floe_deploy_assets: deploy and run the floe data platform on Kubernetes from Dagster."""

__version__ = "0.1.0"
