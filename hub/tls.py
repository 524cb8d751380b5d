"""TLS to the MQTT broker: one SSLContext built from the `mqtt` section, and its errors in words.

Every part that connects to the broker from the config (the hub and its read of retained
incidents, detector workers, `hub simulate`, `hub demo`) builds its context here, so that all
trust the same CA, present the same client certificate and accept the same TLS versions.

OpenSSL's reasons for a failed handshake ("sslv3 alert handshake failure") tell an operator
little. The context's SSL objects turn the usual ones into a sentence that names the key to
change, with OpenSSL's reason in brackets; any other error passes unchanged.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NoReturn

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

    from hub.config.model import MqttConfig

log = logging.getLogger("hub.tls")

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
KEY_PASSWORD_ENV = "HUB_MQTT_KEY_PASSWORD"  # noqa: S105 (a variable's name)


class TlsSetupError(ValueError):
    """A CA bundle, certificate or key named in the config cannot be used; `key` is the
    `mqtt` key to point at (ca_file, cert_file, key_file or key_password)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"mqtt.{key}: {message}")
        self.key = key


class TlsHandshakeError(ssl.SSLError):
    """TLS with the broker failed; the message says why in words, and what to change."""

    def __str__(self) -> str:
        return str(self.args[0])  # SSLError would show the tuple of its arguments


class _KeyIsEncrypted(Exception):
    """Raised by the password callback: the key wants a password, and none is set."""


def mqtt_ssl_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """The context for `cfg`'s broker: None for mqtt://; for mqtts:// it trusts `ca_file`
    (else the system's CAs), presents `cert_file`/`key_file` if set, and accepts TLS
    `tls_min_version` and newer. TlsSetupError if a file cannot be used."""
    if not cfg.tls:
        return None
    ca_file = cfg.ca_file
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError) as exc:
        text = f"{ca_file} holds no CA certificate in PEM form ({exc})"
        raise TlsSetupError("ca_file", text) from None
    context.minimum_version = TLS_VERSIONS[cfg.tls_min_version]
    if cfg.cert_file is not None and cfg.key_file is not None:
        _load_client_cert(context, cfg.cert_file, cfg.key_file, cfg.key_password)
    setup = _Setup(cfg.tls_min_version, ca_file, cfg.cert_file is not None)

    class MqttTlsObject(_Explaining):
        settings = setup

    context.sslobject_class = MqttTlsObject
    return context


def _load_client_cert(
    context: ssl.SSLContext, cert_file: Path, key_file: Path, password: str | None
) -> None:
    try:  # a context of its own reads the certificate alone, to tell it apart from the key
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert_file)
    except (ssl.SSLError, OSError) as exc:
        text = f"{cert_file} holds no certificate in PEM form ({exc})"
        raise TlsSetupError("cert_file", text) from None

    def no_password() -> NoReturn:
        # Without a callback OpenSSL would ask for the password on the terminal.
        raise _KeyIsEncrypted

    try:
        context.load_cert_chain(cert_file, key_file, password=password or no_password)
    except _KeyIsEncrypted:
        raise TlsSetupError(
            "key_file",
            f"{key_file} is encrypted: give its password in ${KEY_PASSWORD_ENV} "
            "(or mqtt.key_password)",
        ) from None
    except (ssl.SSLError, OSError) as exc:
        if getattr(exc, "reason", None) == "KEY_VALUES_MISMATCH":
            text = f"{key_file} is not the key of the certificate in mqtt.cert_file ({cert_file})"
            raise TlsSetupError("key_file", text) from None
        if password and _encrypted(key_file):
            text = f"does not decrypt the key in mqtt.key_file ({key_file})"
            raise TlsSetupError("key_password", text) from None
        text = f"{key_file} holds no private key in PEM form ({exc})"
        raise TlsSetupError("key_file", text) from None


def _encrypted(key_file: Path) -> bool:
    try:
        head = key_file.read_bytes()[:4096]
    except OSError:
        return False
    return b"ENCRYPTED" in head


# --- failures in words -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Setup:
    min_version: str
    ca_file: Path | None
    client_cert: bool


_NEEDS_CERT = "it requires a client certificate: set mqtt.cert_file and mqtt.key_file"
_CERT_REFUSED = {
    "TLSV1_ALERT_UNKNOWN_CA": "it does not trust the CA that signed it",
    "SSLV3_ALERT_BAD_CERTIFICATE": "it is bad",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "it cannot use it",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "it does not support its type",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "it has expired",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "it was revoked",
    "TLSV1_ALERT_ACCESS_DENIED": "access denied",
}
_NO_COMMON_VERSION = {"TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"}
_NOT_TLS = {"WRONG_VERSION_NUMBER"}  # what came back is not a TLS record
# OpenSSL's verify codes for a certificate issued to another name or address.
_NAME_MISMATCH = {62, 64}


def _explain(exc: ssl.SSLError, setup: _Setup, host: str) -> str | None:
    """What went wrong in words, or None for an error this does not know."""
    reason = exc.reason or ""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message
        if exc.verify_code in _NAME_MISMATCH:
            return (
                f"the broker's certificate is not issued to {host} ({detail}): use a name or "
                "address in mqtt.url that the certificate lists"
            )
        if setup.ca_file is not None:
            return (
                f"the broker's certificate does not verify against mqtt.ca_file "
                f"({setup.ca_file}): {detail}"
            )
        return (
            f"the broker's certificate does not verify against the system's CAs ({detail}): "
            "set mqtt.ca_file to the CA that signed it"
        )
    if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED" and not setup.client_cert:
        return f"the broker refused the connection: {_NEEDS_CERT}"
    if reason == "SSLV3_ALERT_HANDSHAKE_FAILURE":
        if not setup.client_cert:
            return f"the broker ended the handshake; most likely {_NEEDS_CERT}"
        return (
            "the broker ended the handshake: it accepts none of the TLS versions and ciphers "
            f"we offer (TLS {setup.min_version} and newer, mqtt.tls_min_version), or not our "
            "client certificate"
        )
    if reason in _CERT_REFUSED:
        if not setup.client_cert:
            return f"the broker refused the connection; most likely {_NEEDS_CERT}"
        return (
            "the broker does not accept our client certificate (mqtt.cert_file): "
            f"{_CERT_REFUSED[reason]}"
        )
    if reason in _NO_COMMON_VERSION:
        advice = "; set mqtt.tls_min_version to 1.2" if setup.min_version != "1.2" else ""
        return (
            f"the broker does not speak TLS {setup.min_version} or newer, the oldest version "
            f"mqtt.tls_min_version allows{advice}"
        )
    if reason in _NOT_TLS:
        return (
            "the broker did not answer in TLS: is the port in mqtt.url its TLS listener "
            "(usually 8883) and not plain MQTT (1883)?"
        )
    return None


class _Explaining(ssl.SSLObject):
    """An SSL object whose handshake and read errors say what to change (see `_explain`)."""

    settings: ClassVar[_Setup]

    def _explained(self, exc: ssl.SSLError) -> TlsHandshakeError | None:
        host = self.server_hostname or "the broker"
        text = _explain(exc, self.settings, host)
        if text is None:
            return None
        return TlsHandshakeError(f"TLS with {host} failed: {text} [{exc.reason or exc}]")

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLSyscallError):
            raise
        except ssl.SSLError as exc:
            explained = self._explained(exc)
            if explained is None:
                raise
            raise explained from exc

    def read(self, len: int = 1024, buffer: WriteableBuffer | None = None) -> bytes:
        # With TLS 1.3 the broker checks our certificate after the handshake, so its refusal
        # comes with the first read. asyncio drops such errors silently: say it here.
        try:
            return super().read(len, buffer)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLSyscallError):
            raise
        except ssl.SSLError as exc:
            explained = self._explained(exc)
            if explained is None:
                raise
            log.warning("MQTT %s", explained)  # e.g. "MQTT TLS with 127.0.0.1 failed: ..."
            raise explained from exc
