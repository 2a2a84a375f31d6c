"""Cluster DNS for real nodes: the names of Services, as a hosts file that dnsmasq serves.

No CoreDNS can be had here (no registry, no Debian package), so Debian's dnsmasq answers, and
this feeder keeps its hosts file in step with the API: ``python -m localcluster.dns --state-dir
DIR --name NAME --port-base N --hosts FILE`` lists Services and Endpoints every half second and
rewrites ``FILE`` when the answer changes (atomically: dnsmasq reloads a file of its
``--hostsdir`` as soon as it appears). A failed list is a blip: the file keeps its last good
content and the next round tries again.

Records, as CoreDNS's ``kubernetes`` plugin gives them for A queries:
- ``<service>.<namespace>.svc.<domain>``: the ClusterIP; for a headless Service, the address of
  every ready endpoint;
- ``<hostname>.<service>.<namespace>.svc.<domain>``: a headless Service's endpoint that has a
  hostname (a StatefulSet's pod under its governing Service).

``query`` asks a DNS server for a name's A records: how ``up`` knows dnsmasq answers, and how the
tests check it without a pod.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import struct
import sys
import time
import urllib.error
from pathlib import Path

from localcluster import api
from localcluster.config import ClusterConfig

CLUSTER_DOMAIN = "cluster.local"
POLL_SECONDS = 0.5


def hosts_lines(
    services: list[dict], endpoints: list[dict], domain: str = CLUSTER_DOMAIN
) -> list[str]:
    """The hosts file's lines (``address name``, sorted) for these Services and Endpoints."""
    lines: set[str] = set()
    headless = set()
    for service in services:
        meta, spec = service["metadata"], service.get("spec", {})
        name = f"{meta['name']}.{meta['namespace']}.svc.{domain}"
        cluster_ip = spec.get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            lines.add(f"{cluster_ip} {name}")
        elif spec.get("type", "ClusterIP") == "ClusterIP":
            headless.add((meta["namespace"], meta["name"]))
    for endpoint in endpoints:
        meta = endpoint["metadata"]
        if (meta["namespace"], meta["name"]) not in headless:
            continue
        name = f"{meta['name']}.{meta['namespace']}.svc.{domain}"
        for subset in endpoint.get("subsets") or []:
            for address in subset.get("addresses") or []:  # ready ones only
                lines.add(f"{address['ip']} {name}")
                if address.get("hostname"):
                    lines.add(f"{address['ip']} {address['hostname']}.{name}")
    return sorted(lines)


def write_if_changed(hosts: Path, lines: list[str]) -> bool:
    """Replace ``hosts`` atomically when its content differs; whether it was written. The new
    content is written beside the hosts directory, not in it: dnsmasq reads every file there."""
    content = "".join(f"{line}\n" for line in lines)
    if hosts.exists() and hosts.read_text() == content:
        return False
    staging = hosts.parent.parent / f".{hosts.name}.new"
    staging.write_text(content)
    os.chmod(staging, 0o644)  # dnsmasq reads it after dropping root
    os.replace(staging, hosts)
    return True


def feed(config: ClusterConfig, hosts: Path) -> None:
    """Keep ``hosts`` in step with the cluster's Services until SIGTERM."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    hosts.parent.mkdir(parents=True, exist_ok=True)
    while not stopping:
        try:
            services = api.request(config, "GET", "/api/v1/services")["items"]
            endpoints = api.request(config, "GET", "/api/v1/endpoints")["items"]
        except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
            print(f"listing Services failed, trying again: {error}", file=sys.stderr, flush=True)
        else:
            if write_if_changed(hosts, hosts_lines(services, endpoints)):
                print(f"{hosts}: {len(services)} Services", flush=True)
        time.sleep(POLL_SECONDS)


def query(name: str, server: str, port: int = 53, timeout: float = 1.0) -> list[str]:
    """The A records ``server`` gives for ``name`` (empty for none); OSError when it does not
    answer in time."""
    ident = secrets.randbits(16)
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.rstrip(".").split("."))
    # One question, recursion desired; type A, class IN.
    message = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + b"\0\0\1\0\1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(message, (server, port))
        while True:
            answer = sock.recv(4096)
            if len(answer) >= 12 and struct.unpack(">H", answer[:2])[0] == ident:
                break
    count = struct.unpack(">H", answer[6:8])[0]
    offset = 12 + len(labels) + 5  # past the header and the question it repeats
    addresses = []
    for _ in range(count):
        offset = _past_name(answer, offset)
        kind, _cls, _ttl, length = struct.unpack(">HHIH", answer[offset : offset + 10])
        offset += 10
        if kind == 1 and length == 4:
            addresses.append(socket.inet_ntoa(answer[offset : offset + 4]))
        offset += length
    return addresses


def _past_name(message: bytes, offset: int) -> int:
    """The offset after a (possibly compressed) name in a DNS message."""
    while True:
        length = message[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:  # a pointer ends the name
            return offset + 2
        offset += 1 + length


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localcluster.dns", description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--port-base", type=int, required=True)
    parser.add_argument("--hosts", type=Path, required=True)
    args = parser.parse_args(argv)
    config = ClusterConfig(name=args.name, state_dir=args.state_dir, port_base=args.port_base)
    feed(config, args.hosts)


if __name__ == "__main__":
    main()
