"""Throwaway PKI for a local control plane: CA, serving cert, client identities, SA key pair."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=7)
_BACKDATE = dt.timedelta(minutes=5)


def _write(path: Path, data: bytes, *, private: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


@dataclass(frozen=True)
class CertPair:
    """PEM files of one certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """All files of the throwaway PKI; ``ca_key`` signs further client identities."""

    directory: Path
    ca: CertPair
    serving: CertPair
    admin: CertPair
    sa_private_key: Path
    sa_public_key: Path

    def issue_client(self, user: str, groups: Sequence[str] = ()) -> CertPair:
        """Issue a client certificate: CN is the user name, O entries are its groups."""
        ca_key = serialization.load_pem_private_key(self.ca.key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError("unexpected CA key type")
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        return _issue(
            self.directory / "users" / safe,
            ca_cert,
            ca_key,
            _name(user, groups),
            client=True,
        )


def _issue(
    stem: Path,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    *,
    client: bool,
    sans: Sequence[x509.GeneralName] = (),
) -> CertPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return CertPair(
        cert=_write(stem.with_suffix(".crt"), _cert_pem(cert)),
        key=_write(stem.with_suffix(".key"), _key_pem(key), private=True),
    )


def generate_pki(
    directory: Path, *, service_ip: str = "10.0.0.1", extra_ips: Sequence[str] = ()
) -> Pki:
    """Create a CA, a serving cert for 127.0.0.1/localhost (and ``extra_ips``, e.g. a node's
    address), an admin identity and an SA key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca_subject = _name("rankswap-localkube-ca")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca = CertPair(
        cert=_write(directory / "ca.crt", _cert_pem(ca_cert)),
        key=_write(directory / "ca.key", _key_pem(ca_key), private=True),
    )
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address(service_ip)),
        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    serving = _issue(
        directory / "apiserver", ca_cert, ca_key, _name("kube-apiserver"), client=False, sans=sans
    )
    admin = _issue(
        directory / "admin", ca_cert, ca_key, _name("admin", ["system:masters"]), client=True
    )
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_private = _write(directory / "sa.key", _key_pem(sa_key), private=True)
    sa_public = _write(
        directory / "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return Pki(
        directory=directory,
        ca=ca,
        serving=serving,
        admin=admin,
        sa_private_key=sa_private,
        sa_public_key=sa_public,
    )
