"""Certificates, keys and tokens for one local cluster, made with the openssl command.

One CA signs the API server's and the simulated kubelet's serving certificates, so clients verify
TLS against ``ca.crt`` instead of turning verification off. The service-account key pair signs
the tokens the controller manager mints.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

from localcluster.config import ClusterConfig
from localcluster.errors import LocalClusterError

API_SERVER_SANS = (
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
    "DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
)
KUBELET_SANS = "DNS:localhost,IP:127.0.0.1"
CERT_DAYS = "3650"


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise LocalClusterError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def signed_certificate(
    pki: Path, name: str, subject: str, sans: str, usage: str = "serverAuth"
) -> None:
    key, csr, crt = pki / f"{name}.key", pki / f"{name}.csr", pki / f"{name}.crt"
    _openssl("genrsa", "-out", str(key), "2048")
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    extensions = pki / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName={sans}\nextendedKeyUsage={usage}\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(pki / "ca.crt"),
        "-CAkey",
        str(pki / "ca.key"),
        "-CAcreateserial",
        "-days",
        CERT_DAYS,
        "-out",
        str(crt),
        "-extfile",
        str(extensions),
    )
    csr.unlink()
    extensions.unlink()


def ensure_pki(config: ClusterConfig) -> None:
    """Create whatever of the cluster's key material is missing; existing material is kept."""
    pki = config.pki_dir
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    if not (pki / "ca.crt").exists():
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(pki / "ca.key"),
            "-out",
            str(pki / "ca.crt"),
            "-days",
            CERT_DAYS,
            "-subj",
            f"/CN={config.name}-ca",
        )
    if not (pki / "apiserver.crt").exists():
        signed_certificate(pki, "apiserver", "/CN=kube-apiserver", API_SERVER_SANS)
    if not (pki / "kubelet.crt").exists():
        signed_certificate(pki, "kubelet", "/CN=simulated-kubelet", KUBELET_SANS)
    if not (pki / "apiserver-kubelet-client.crt").exists():
        # The API server's identity towards real kubelets (pods/log, exec), which authorize
        # it through the API server like any other client.
        signed_certificate(
            pki,
            "apiserver-kubelet-client",
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
            "DNS:kube-apiserver-kubelet-client",
            usage="clientAuth",
        )
    if not (pki / "sa.key").exists():
        _openssl("genrsa", "-out", str(pki / "sa.key"), "2048")
        _openssl("rsa", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    tokens = pki / "tokens.csv"
    if not tokens.exists():
        tokens.write_text(f"{secrets.token_hex(24)},admin,admin,system:masters\n")
        tokens.chmod(0o600)


def admin_token(config: ClusterConfig) -> str:
    return (config.pki_dir / "tokens.csv").read_text().split(",", 1)[0]
