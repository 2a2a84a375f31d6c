"""Create the namespace and the Secrets an environment needs, with random values, for the demo.

In a real environment the operator provides these Secrets (README: "Secrets an operator must
provide"); floe-deploy only references them. Existing Secrets keep their values; keys they
lack are added.

    KUBECONFIG=... python examples/demo_secrets.py --env dev [--config floe-deploy.yaml]
"""

from __future__ import annotations

import argparse
import base64
import secrets
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from floe_deploy_assets.helm.inputs import release_generators
from floe_deploy_assets.models.config import load_deployment_config
from floe_deploy_assets.models.products import load_products

# Keys that must hold another Secret's value: the example product's dbt profile connects to the
# platform's PostgreSQL as its superuser, so its password is the platform's.
SAME_AS = {
    "floe-dbt-profiles": {"DBT_ENV_SECRET_PG_PASSWORD": ("floe-postgresql", "password")},
}


def _encoded(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _value_of(core: client.CoreV1Api, namespace: str, name: str, key: str) -> str:
    """A key of a Secret the platform's chart required (created before the jobs' Secrets)."""
    return core.read_namespaced_secret(name, namespace).data[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("floe-deploy.yaml"))
    parser.add_argument("--env", required=True)
    args = parser.parse_args()
    deployment = load_deployment_config(args.config)
    products = load_products(deployment)
    mapping = deployment.mapping_for(args.env)
    namespace = mapping.namespace_for(args.env)
    core = client.CoreV1Api(config.new_client_from_config(context=mapping.cluster))
    try:
        core.create_namespace({"metadata": {"name": namespace}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    # Every release deploy would install (the platform, each product's jobs), from the
    # generators deploy itself uses: what they require is what deploy checks for.
    for generator in release_generators(deployment, products, args.env):
        for required in generator.required_secrets:
            _provide(core, namespace, required.name, required.keys)


def _provide(core: client.CoreV1Api, namespace: str, name: str, keys: tuple[str, ...]) -> None:
    """The Secret with random values for ``keys`` (those of SAME_AS copied); an existing one
    keeps its values and gets only the keys it lacks (a newer demo may need more)."""
    try:
        existing = core.read_namespaced_secret(name, namespace).data or {}
    except ApiException as exc:
        if exc.status != 404:
            raise
        existing = None
    missing = [key for key in keys if existing is None or key not in existing]
    if not missing:
        print(f"Secret {namespace}/{name} exists; left as it is")
        return
    # Base64, as a Secret's data holds it (and as another Secret's value is read).
    data = {key: _encoded(secrets.token_urlsafe(24)) for key in missing}
    for key in data.keys() & SAME_AS.get(name, {}).keys():
        data[key] = _value_of(core, namespace, *SAME_AS[name][key])
    if existing is None:
        core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "data": data})
        print(f"created Secret {namespace}/{name} (random values)")
    else:
        core.patch_namespaced_secret(name, namespace, {"data": data})
        print(f"Secret {namespace}/{name} exists; added {', '.join(sorted(data))}")


if __name__ == "__main__":
    main()
