"""The local CA signs a serving certificate for loopback and an admin client certificate."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from e2e.cluster import pki


def test_certificates_chain_to_the_ca_and_are_reused(tmp_path: Path) -> None:
    certs = pki.ensure(tmp_path)
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    serving = x509.load_pem_x509_certificate(certs.serving_cert.read_bytes())
    admin = x509.load_pem_x509_certificate(certs.admin_cert.read_bytes())

    serving.verify_directly_issued_by(ca)
    admin.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)
    groups = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert [g.value for g in groups] == ["system:masters"]
    usage = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage
    assert certs.admin_key.stat().st_mode & 0o077 == 0

    before = certs.ca_cert.read_bytes()
    pki.ensure(tmp_path)
    assert certs.ca_cert.read_bytes() == before
