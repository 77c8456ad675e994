"""A self-signed PKI for the devcluster: one CA signs every serving and client cert.

Keys are ECDSA P-256 (fast to make, accepted by Go's TLS stack) except the
service-account signing key, which is RSA because that is what every token
consumer expects.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: CN of the client cert the apiserver presents to kubelets; the node agent accepts only it.
KUBELET_CLIENT_CN = "kube-apiserver-kubelet-client"
VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class CertPair:
    """Paths of a PEM certificate and its key."""

    cert: Path
    key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def make_ca(directory: Path) -> CertPair:
    """Create ``ca.crt``/``ca.key`` in ``directory`` unless they exist.

    Args:
        directory: The PKI folder.

    Returns:
        The CA's cert and key paths.
    """
    pair = CertPair(directory / "ca.crt", directory / "ca.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name("kubelab-devcluster-ca")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_key(pair.key, key)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair


def issue(
    ca: CertPair,
    out: CertPair,
    cn: str,
    *,
    org: str | None = None,
    ips: tuple[str, ...] = (),
    dns: tuple[str, ...] = (),
    server: bool = False,
    client: bool = False,
) -> CertPair:
    """Issue a leaf certificate signed by ``ca`` unless ``out`` already exists.

    Args:
        ca: The signing CA.
        out: Where to write the new cert and key.
        cn: Subject common name (the user name for client certs).
        org: Subject organisation (the group for client certs).
        ips: IP subject alternative names.
        dns: DNS subject alternative names.
        server: Allow TLS server auth.
        client: Allow TLS client auth.

    Returns:
        ``out``.
    """
    if out.cert.exists() and out.key.exists():
        return out
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    sans += [x509.DNSName(name) for name in dns]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    out.cert.parent.mkdir(parents=True, exist_ok=True)
    _write_key(out.key, key)
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def make_service_account_keys(directory: Path) -> CertPair:
    """Create the RSA key pair that signs service-account tokens (``sa.pub`` is the "cert").

    Returns:
        ``CertPair(cert=sa.pub, key=sa.key)``.
    """
    pair = CertPair(directory / "sa.pub", directory / "sa.key")
    if pair.cert.exists() and pair.key.exists():
        return pair
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(pair.key, key)
    pair.cert.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pair


@dataclass(frozen=True)
class ClusterPki:
    """Every file of the control plane's PKI."""

    ca: CertPair
    apiserver: CertPair
    admin: CertPair
    kubelet_client: CertPair
    service_account: CertPair


def make_cluster_pki(directory: Path, service_ip: str) -> ClusterPki:
    """Create (or reuse) the control plane's PKI in ``directory``.

    Args:
        directory: The PKI folder (``<state>/pki``).
        service_ip: The ``kubernetes`` Service's ClusterIP, added to the apiserver cert.

    Returns:
        The paths of every cert and key.
    """
    ca = make_ca(directory)
    apiserver = issue(
        ca, CertPair(directory / "apiserver.crt", directory / "apiserver.key"), "kube-apiserver",
        ips=("127.0.0.1", service_ip),
        dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local"),
        server=True,
    )
    admin = issue(
        ca, CertPair(directory / "admin.crt", directory / "admin.key"), "admin", org="system:masters",
        client=True,
    )
    kubelet_client = issue(
        ca, CertPair(directory / "kubelet-client.crt", directory / "kubelet-client.key"),
        KUBELET_CLIENT_CN, org="system:masters", client=True,
    )
    return ClusterPki(ca, apiserver, admin, kubelet_client, make_service_account_keys(directory))


def node_serving_cert(directory: Path, node: str, ip: str) -> CertPair:
    """Issue the kubelet-API serving cert of ``node`` (IP SAN ``ip``) signed by the cluster CA.

    Args:
        directory: The cluster's PKI folder (holding ``ca.crt``/``ca.key``).
        node: The Node name, used as CN and DNS SAN.
        ip: The node's InternalIP.

    Returns:
        The cert and key paths, ``<directory>/nodes/<node>.crt|key``.
    """
    ca = CertPair(directory / "ca.crt", directory / "ca.key")
    out = CertPair(directory / "nodes" / f"{node}.crt", directory / "nodes" / f"{node}.key")
    return issue(ca, out, f"system:node:{node}", org="system:nodes", ips=(ip,), dns=(node,), server=True)
