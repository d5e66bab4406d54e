"""The shared cluster's certificate authority: TLS with mutual authentication.

The hub keeps a CA in its state dir (readable by root only). The scheduler
and the workers get a certificate of the cluster's service account; each
user's server gets its own client certificate at spawn, in a 0700 folder of
the user's home. Dask's TLS comm requires a certificate signed by this CA
from both ends (``ssl.CERT_REQUIRED``), so a process without one is refused
at the handshake.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClusterCA", "dask_tls_env"]

_DAYS = 3650


def _write_private(path: Path, data: bytes, uid: int = -1, gid: int = -1) -> None:
    """Write ``data`` to ``path``, mode 0600 from the start (owner ``uid``:``gid``).

    Written under a temporary name and renamed, so no half-written file is left.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if uid >= 0:
            os.chown(tmp, uid, gid)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Credentials:
    """Paths of a CA certificate, a certificate and its key."""

    ca_file: Path
    cert: Path
    key: Path


class ClusterCA:
    """A certificate authority kept in ``directory`` (mode 0700), made on first use.

    Parameters
    ----------
    directory : path
        Where ``ca.pem`` and ``ca.key`` live.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        self.ca_file = self.directory / "ca.pem"
        key_file = self.directory / "ca.key"
        if not (self.ca_file.exists() and key_file.exists()):
            self._make(key_file)
        self._key = serialization.load_pem_private_key(key_file.read_bytes(), None)
        self._cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())

    def _make(self, key_file: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vanotebook cluster CA")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        _write_private(key_file, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        _write_private(self.ca_file, cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, directory: str | os.PathLike, *, uid: int = -1,
              gid: int = -1) -> Credentials:
        """A certificate for ``name`` (client and server use), written into ``directory``.

        The folder is made 0700 and, with ``uid``/``gid``, owned by that
        account, as are the three files (0600): ``ca.pem``, ``<name>.pem``,
        ``<name>.key``. A fresh key pair each time.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        if uid >= 0:
            os.chown(directory, uid, gid)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(self._cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=_DAYS))
                .add_extension(x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.DNSName(name)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                    critical=False)
                .sign(self._key, hashes.SHA256()))
        creds = Credentials(directory / "ca.pem", directory / f"{name}.pem",
                            directory / f"{name}.key")
        _write_private(creds.key, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()), uid, gid)
        _write_private(creds.cert, cert.public_bytes(serialization.Encoding.PEM), uid, gid)
        _write_private(creds.ca_file, self.ca_file.read_bytes(), uid, gid)
        return creds


def dask_tls_env(creds: Credentials) -> dict[str, str]:
    """Dask config, as environment variables, that makes every comm TLS with ``creds``.

    A plain ``distributed.Client(address)`` in that environment presents the
    certificate; `distributed.security.Security` reads the same keys.
    """
    env = {"DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
           "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(creds.ca_file)}
    for role in ("CLIENT", "SCHEDULER", "WORKER"):
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__CERT"] = str(creds.cert)
        env[f"DASK_DISTRIBUTED__COMM__TLS__{role}__KEY"] = str(creds.key)
    return env
