"""Certificates for TLS tests, made with the `openssl` command line at test time.

A CA, a server certificate for 127.0.0.1 (an IP subject alternative name), a client
certificate with its key (plain and encrypted), and a second CA that signed nothing we use.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

KEY_PASSWORD = "correct horse"  # a test key's


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    client_key_encrypted: Path  # client_key under KEY_PASSWORD
    other_ca: Path
    other_key: Path  # not the key of any certificate here


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _key(key)
    _openssl(
        "req", "-x509", "-new", "-key", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _issue(folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, csr = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    _key(key)
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}")
    ext.write_text(
        "basicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\n"
        f"authorityKeyIdentifier=keyid,issuer\n{extensions}\n"
    )
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", ext,
    )  # fmt: skip
    return cert, key


def make_pki(folder: Path) -> Pki:
    """Every file in `folder` (about a tenth of a second of openssl)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "test-ca")
    server = _issue(
        folder, "broker", ca, "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    )
    client = _issue(folder, "hub-client", ca, "extendedKeyUsage=clientAuth")
    encrypted = folder / "hub-client-encrypted.key"
    _openssl(
        "pkey", "-in", client[1], "-aes256", "-passout", f"pass:{KEY_PASSWORD}", "-out", encrypted
    )
    other_ca, other_key = _ca(folder, "other-ca")
    return Pki(
        ca=ca[0],
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        client_key_encrypted=encrypted,
        other_ca=other_ca,
        other_key=other_key,
    )
