"""The cluster DNS feeder's records: what a Service and its endpoints resolve to."""

from __future__ import annotations

from pathlib import Path

from localcluster import dns


def _service(name: str, namespace: str, cluster_ip: str | None, kind: str = "ClusterIP") -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": kind, "clusterIP": cluster_ip},
    }


def _endpoints(name: str, namespace: str, *addresses: dict) -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "subsets": [{"addresses": list(addresses), "notReadyAddresses": [{"ip": "10.1.0.99"}]}],
    }


def test_a_cluster_ip_service_resolves_to_its_cluster_ip_not_its_pods():
    lines = dns.hosts_lines(
        [_service("web", "shop", "10.96.3.4")],
        [_endpoints("web", "shop", {"ip": "10.1.0.5"})],
    )
    assert lines == ["10.96.3.4 web.shop.svc.cluster.local"]


def test_a_headless_service_resolves_to_its_ready_pods_and_their_hostnames():
    lines = dns.hosts_lines(
        [_service("db", "data", "None")],
        [
            _endpoints(
                "db",
                "data",
                {"ip": "10.1.0.7", "hostname": "db-0"},
                {"ip": "10.1.0.8"},
            )
        ],
    )
    assert lines == [
        "10.1.0.7 db-0.db.data.svc.cluster.local",
        "10.1.0.7 db.data.svc.cluster.local",
        "10.1.0.8 db.data.svc.cluster.local",
    ]


def test_endpoints_of_a_service_with_a_cluster_ip_or_of_no_service_add_nothing():
    lines = dns.hosts_lines(
        [_service("web", "shop", "10.96.3.4"), _service("ext", "shop", None, "ExternalName")],
        [
            _endpoints("orphan", "shop", {"ip": "10.1.0.9"}),
            _endpoints("ext", "shop", {"ip": "1.2.3.4"}),
        ],
    )
    assert lines == ["10.96.3.4 web.shop.svc.cluster.local"]


def test_the_hosts_file_is_replaced_only_when_it_changes(tmp_path: Path):
    hosts = tmp_path / "hosts.d" / "services"
    hosts.parent.mkdir()
    assert dns.write_if_changed(hosts, ["10.96.0.1 kubernetes.default.svc.cluster.local"])
    assert not dns.write_if_changed(hosts, ["10.96.0.1 kubernetes.default.svc.cluster.local"])
    assert hosts.read_text() == "10.96.0.1 kubernetes.default.svc.cluster.local\n"
    assert [p.name for p in hosts.parent.iterdir()] == ["services"]  # no staging file in it
