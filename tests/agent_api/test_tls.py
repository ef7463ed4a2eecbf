"""The agent's self-signed certificate: made once, printed like openssl prints it, pinned by
clients; a damaged identity is an error naming the file, never silently replaced."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import stat
import subprocess
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from agent.site_tls import site_identity
from shared.clock import ManualClock
from shared.command_line import main
from shared.tls_identity import TlsIdentity, TlsIdentityError
from shared.tls_pinning import format_fingerprint, normalize_fingerprint, pinned_fingerprint
from tests.agent_api.api_site import ApiSite, api_config


def _openssl_fingerprint(cert: Path) -> str:
    result = subprocess.run(
        ["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    )
    label, _, value = result.stdout.strip().partition("=")
    assert label.lower() == "sha256 fingerprint", result.stdout
    return value


def test_the_cli_prints_the_fingerprint_openssl_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = api_config(tmp_path)
    assert main(["agent", "fingerprint", "--config", str(config.file)]) == 0
    first = capsys.readouterr()
    assert "made a new self-signed certificate" in first.err
    assert str(config.api.tls_certificate) in first.err
    fingerprint = first.out.strip()
    assert fingerprint == _openssl_fingerprint(config.api.tls_certificate)
    assert len(fingerprint) == 95  # 32 uppercase hex pairs and 31 colons
    assert stat.S_IMODE(config.api.tls_key.stat().st_mode) == 0o600
    # Later calls print the same certificate's fingerprint and make nothing.
    assert main(["agent", "fingerprint", "--config", str(config.file)]) == 0
    again = capsys.readouterr()
    assert (again.out.strip(), again.err) == (fingerprint, "")


def test_the_certificate_names_this_host_and_lasts_ten_years(tmp_path: Path) -> None:
    config = api_config(tmp_path, api_toml='bind = "127.0.0.2"')
    clock = ManualClock()
    identity = site_identity(config, clock)
    certificate = identity.certificate
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) >= {"localhost", socket.gethostname()}
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("127.0.0.2"),
    }
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    now = datetime.datetime.fromtimestamp(clock.now_ns() / 1e9, tz=datetime.UTC)
    assert certificate.not_valid_before_utc <= now
    assert certificate.not_valid_after_utc - now >= datetime.timedelta(days=3649)
    assert config.site.id in certificate.subject.rfc4514_string()


async def test_a_client_pinning_the_fingerprint_connects_and_no_other_does(
    api: ApiSite,
) -> None:
    assert (await api.call("POST", "/api/v1/auth/logout"))[0] == 401  # pinned: the TLS works
    url = api.url("/api/v1/site")
    wrong = format_fingerprint(bytes(32))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ServerFingerprintMismatch):
            await session.get(url, ssl=pinned_fingerprint(wrong))
        # Ordinary verification refuses a self-signed certificate: pinning is the way in.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(url)
        async with session.get(url, ssl=pinned_fingerprint(api.identity.fingerprint)) as reply:
            assert reply.status == 401


def test_fingerprints_are_read_in_every_usual_spelling() -> None:
    digest = bytes(range(32))
    colons = format_fingerprint(digest)
    assert colons.startswith("00:01:02:")
    assert colons.endswith(":1E:1F")
    spellings = (colons, colons.lower(), colons.replace(":", ""), f" sha256 Fingerprint={colons}\n")
    for text in spellings:
        assert normalize_fingerprint(text) == digest
    with pytest.raises(ValueError, match=r"has 32 bytes \(64 hex digits\), this has 31"):
        normalize_fingerprint(colons[:-3])
    with pytest.raises(ValueError, match="expected hex pairs separated by colons"):
        normalize_fingerprint(colons.replace("00:", "0:", 1))
    with pytest.raises(ValueError, match="expected hexadecimal digits"):
        normalize_fingerprint("zz" * 32)


def test_a_damaged_identity_is_an_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = api_config(tmp_path)
    clock = ManualClock()
    cert, key = config.api.tls_certificate, config.api.tls_key
    site_identity(config, clock)
    good_cert = cert.read_bytes()

    cert.write_bytes(good_cert[:100])
    with pytest.raises(TlsIdentityError, match=f"{cert}: not a readable PEM certificate"):
        site_identity(config, clock)
    assert main(["agent", "fingerprint", "--config", str(config.file)]) == 2
    assert f"{cert}: not a readable PEM certificate" in capsys.readouterr().err
    assert cert.read_bytes() == good_cert[:100]  # left for the technician, not replaced

    other = TlsIdentity.load_or_create(
        tmp_path / "other.pem", tmp_path / "other-key.pem", common_name="x", clock=clock
    )
    cert.write_bytes(other.cert_path.read_bytes())
    with pytest.raises(TlsIdentityError, match=f"{cert}: the certificate does not belong"):
        site_identity(config, clock)

    key.write_text("not a key")
    with pytest.raises(TlsIdentityError, match=f"{key}: not a readable PEM private key"):
        site_identity(config, clock)

    key.unlink()
    with pytest.raises(TlsIdentityError, match=f"{cert}: the certificate's private key"):
        site_identity(config, clock)


def test_a_key_without_its_certificate_gets_one(tmp_path: Path) -> None:
    """A crash between writing the key and the certificate leaves the key alone."""
    config = api_config(tmp_path)
    clock = ManualClock()
    first = site_identity(config, clock)
    key_pem = config.api.tls_key.read_bytes()
    config.api.tls_certificate.unlink()
    second = site_identity(config, clock)
    assert config.api.tls_key.read_bytes() == key_pem
    assert second.certificate.public_key() == first.certificate.public_key()
