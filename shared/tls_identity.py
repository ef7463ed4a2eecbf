"""A server's TLS identity: a self-signed certificate made at first start, pinned by clients.

Nobody signs the certificate; a client trusts it by comparing its SHA-256 fingerprint with
the one an administrator read from `siteline agent fingerprint` (or from the zeroconf record).
The fingerprint is printed as `openssl x509 -noout -fingerprint -sha256` prints it, so the two
can be compared by eye. The key is written first (mode 0600), then the certificate, each
atomically: a crash between the two leaves a key without a certificate, and the next start
makes the certificate from that key. Anything else that is wrong (a corrupt file, a
certificate without its key, a key that does not match) is an error naming the file; an
existing identity is never replaced silently, since that would break every client's pin.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import secrets
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.atomic_file import write_atomically
from shared.clock import NS_PER_S, Clock
from shared.tls_pinning import format_fingerprint

VALIDITY_DAYS = 3650
CLOCK_SKEW_ALLOWANCE_S = 86_400  # valid from a day back, for clients whose clock is behind
LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = ("127.0.0.1", "::1")


class TlsIdentityError(Exception):
    """The certificate or key file is unreadable, corrupt, missing its pair, or mismatched."""


def local_host_names() -> tuple[str, ...]:
    """The names a certificate made on this machine should carry: its host name, localhost."""
    host = socket.gethostname()
    return (host, *LOOPBACK_NAMES) if host and host not in LOOPBACK_NAMES else LOOPBACK_NAMES


def server_identity(
    certificate: Path, key: Path, *, common_name: str, bind: str, clock: Clock
) -> TlsIdentity:
    """The identity at these paths, made if absent, naming this host, loopback and `bind`
    when it is a specific address (a server bound to every address gets only the names)."""
    addresses = list(LOOPBACK_ADDRESSES)
    try:
        if not ipaddress.ip_address(bind).is_unspecified:
            addresses.append(bind)
    except ValueError:
        pass  # a host name to bind to: it is not an address for the certificate
    return TlsIdentity.load_or_create(
        certificate,
        key,
        common_name=common_name,
        clock=clock,
        host_names=local_host_names(),
        addresses=addresses,
    )


class TlsIdentity:
    """A certificate and its private key on disk; see the module docstring."""

    def __init__(self, cert_path: Path, key_path: Path, certificate: x509.Certificate) -> None:
        """Use `load_or_create`; this only wraps files already checked to match."""
        self.cert_path = cert_path
        self.key_path = key_path
        self.certificate = certificate
        self._der = certificate.public_bytes(serialization.Encoding.DER)

    @classmethod
    def load_or_create(
        cls,
        cert_path: Path,
        key_path: Path,
        *,
        common_name: str,
        clock: Clock,
        host_names: Sequence[str] = LOOPBACK_NAMES,
        addresses: Sequence[str] = LOOPBACK_ADDRESSES,
    ) -> TlsIdentity:
        """Load the identity at the two paths, or make it (see the module docstring).

        Blocking (file I/O, key generation): async callers run it in a worker thread.
        Raises `TlsIdentityError` naming the file for anything it will not repair.
        """
        if cert_path.exists():
            if not key_path.exists():
                raise TlsIdentityError(
                    f"{cert_path}: the certificate's private key {key_path} is missing; restore "
                    "it, or remove the certificate to make a new identity (clients that pinned "
                    "the old fingerprint must then pin the new one)"
                )
            key = _load_key(key_path)
            certificate = _load_certificate(cert_path)
            if _public_der(certificate.public_key()) != _public_der(key.public_key()):
                raise TlsIdentityError(
                    f"{cert_path}: the certificate does not belong to the key {key_path}"
                )
            return cls(cert_path, key_path, certificate)
        key = _load_key(key_path) if key_path.exists() else _new_key(key_path)
        certificate = _self_signed(
            key,
            common_name=common_name,
            now_ns=clock.now_ns(),
            host_names=host_names,
            addresses=addresses,
        )
        write_atomically(
            cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644
        )
        return cls(cert_path, key_path, certificate)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate as uppercase hex pairs joined by colons."""
        return format_fingerprint(hashlib.sha256(self._der).digest())

    @property
    def fingerprint_bytes(self) -> bytes:
        """The raw SHA-256 of the DER certificate (what `aiohttp.Fingerprint` takes)."""
        return hashlib.sha256(self._der).digest()

    def server_ssl_context(self) -> ssl.SSLContext:
        """A server-side context serving this certificate, TLS 1.2 or newer."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError) as exc:
            raise TlsIdentityError(
                f"{self.cert_path}: cannot be served with {self.key_path}: {exc}"
            ) from exc
        return context


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as exc:
        raise TlsIdentityError(f"{path}: not a readable PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsIdentityError(f"{path}: the TLS key is not an elliptic-curve (P-256) key")
    return key


def _public_der(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (ValueError, OSError) as exc:
        raise TlsIdentityError(f"{path}: not a readable PEM certificate ({exc})") from exc


def _new_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomically(path, pem, mode=0o600)
    return key


def _self_signed(
    key: ec.EllipticCurvePrivateKey,
    *,
    common_name: str,
    now_ns: int,
    host_names: Sequence[str],
    addresses: Sequence[str],
) -> x509.Certificate:
    now = datetime.datetime.fromtimestamp(now_ns // NS_PER_S, tz=datetime.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Siteline agent"),
        ]
    )
    alternative: list[x509.GeneralName] = [x509.DNSName(h) for h in dict.fromkeys(host_names)]
    alternative += [x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys(addresses)]
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - datetime.timedelta(seconds=CLOCK_SKEW_ALLOWANCE_S))
        .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
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
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
