"""hub.yaml's TLS keys: ca_file, cert_file, key_file, key_password and tls_min_version, each
refused with its place when it cannot work."""

from __future__ import annotations

import os
import ssl
import textwrap
from pathlib import Path

import pytest

from hub.config import ConfigError, load_config
from hub.tls import mqtt_ssl_context
from tests.pki import KEY_PASSWORD, Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder, so that messages name files as `hub.yaml`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(text: str) -> Path:
    path = Path("hub.yaml")
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path, pki: Pki, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env or {})
    return [str(p).replace(str(pki.ca.parent), "PKI") for p in caught.value.problems]


def test_without_tls_keys_there_is_no_context_for_mqtt_and_the_system_cas_for_mqtts() -> None:
    config = load_config(None, env={})
    assert (config.mqtt.ca_file, config.mqtt.cert_file, config.mqtt.key_file) == (None,) * 3
    assert config.mqtt.tls_min_version == "1.2"
    assert mqtt_ssl_context(config.mqtt) is None
    tls = load_config(None, mqtt_url="mqtts://broker.example", env={})
    context = mqtt_ssl_context(tls.mqtt)
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_the_tls_keys_are_read_against_the_config_folder(in_tmp: Path, pki: Pki) -> None:
    certs = in_tmp / "certs"
    certs.mkdir()
    for source in (pki.ca, pki.client_cert, pki.client_key):
        (certs / source.name).write_bytes(source.read_bytes())
    path = write(
        """\
        mqtt:
          url: mqtts://127.0.0.1:8883
          ca_file: certs/test-ca.pem
          cert_file: certs/hub-client.pem
          key_file: certs/hub-client.key
          tls_min_version: 1.3
        """
    )
    mqtt = load_config(path, env={}).mqtt
    assert mqtt.ca_file == certs / "test-ca.pem"
    assert mqtt.cert_file == certs / "hub-client.pem"
    assert mqtt.key_file == certs / "hub-client.key"
    assert mqtt.tls_min_version == "1.3"  # 1.3 unquoted is a number in YAML
    context = mqtt_ssl_context(mqtt)
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    # The CA bundle replaces the system's CAs.
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]


def test_tls_keys_with_a_plain_mqtt_url_say_to_use_mqtts(pki: Pki) -> None:
    path = write(
        f"""\
        mqtt:
          url: mqtt://broker:1883
          ca_file: {pki.ca}
          cert_file: {pki.client_cert}
          key_file: {pki.client_key}
          tls_min_version: "1.3"
        """
    )
    tail = "use an mqtts:// URL (the broker's TLS listener, usually port 8883)"
    assert problems(path, pki) == [
        f"hub.yaml:3:12: mqtt.ca_file: applies to TLS only, and mqtt.url is "
        f"'mqtt://broker:1883': {tail}",
        f"hub.yaml:4:14: mqtt.cert_file: applies to TLS only, and mqtt.url is "
        f"'mqtt://broker:1883': {tail}",
        f"hub.yaml:5:13: mqtt.key_file: applies to TLS only, and mqtt.url is "
        f"'mqtt://broker:1883': {tail}",
        f"hub.yaml:6:20: mqtt.tls_min_version: applies to TLS only, and mqtt.url is "
        f"'mqtt://broker:1883': {tail}",
    ]


def test_a_certificate_and_its_key_go_together(pki: Pki) -> None:
    alone = write(f"mqtt: {{url: 'mqtts://broker', cert_file: {pki.client_cert}}}\n")
    assert problems(alone, pki) == [
        "hub.yaml:1:7: mqtt.key_file: missing: mqtt.cert_file is set, and its key goes in "
        "mqtt.key_file"
    ]
    key_only = write(f"mqtt: {{url: 'mqtts://broker', key_file: {pki.client_key}}}\n")
    assert problems(key_only, pki) == [
        "hub.yaml:1:41: mqtt.key_file: set without mqtt.cert_file: give the client certificate too"
    ]


def test_the_files_must_exist_be_files_and_be_readable(in_tmp: Path, pki: Pki) -> None:
    (in_tmp / "certs").mkdir()
    path = write(
        f"""\
        mqtt:
          url: mqtts://broker:8883
          ca_file: nowhere/ca.pem
          cert_file: certs
          key_file: {pki.client_key}
        """
    )
    assert problems(path, pki) == [
        f"hub.yaml:3:12: mqtt.ca_file: no such file: {in_tmp}/nowhere/ca.pem",
        f"hub.yaml:4:14: mqtt.cert_file: not a file: {in_tmp}/certs",
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="needs a user other than root: root reads every file")
def test_a_file_this_user_cannot_read_is_a_problem(in_tmp: Path, pki: Pki) -> None:
    secret = in_tmp / "ca.pem"
    secret.write_bytes(pki.ca.read_bytes())
    secret.chmod(0)
    path = write("mqtt: {url: 'mqtts://broker', ca_file: ca.pem}\n")
    assert problems(path, pki) == [
        f"hub.yaml:1:41: mqtt.ca_file: cannot be read by this user: {secret}"
    ]


def test_tls_min_version_is_1_2_or_1_3() -> None:
    path = write("mqtt: {url: 'mqtts://broker', tls_min_version: 1.1}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert [str(p) for p in caught.value.problems] == [
        "hub.yaml:1:48: mqtt.tls_min_version: '1.1' is not one of 1.2, 1.3, did you mean '1.3'?"
    ]


def test_files_that_do_not_hold_what_they_should(pki: Pki) -> None:
    def tls(**keys: Path) -> list[str]:
        lines = "".join(f"  {k}: {v}\n" for k, v in keys.items())
        return problems(write(f"mqtt:\n  url: mqtts://broker\n{lines}"), pki)

    [text] = tls(ca_file=pki.client_key)
    assert text.startswith(
        "hub.yaml:3:12: mqtt.ca_file: PKI/hub-client.key holds no CA certificate in PEM form "
        "([X509: NO_CERTIFICATE_OR_CRL_FOUND]"
    )
    [text] = tls(cert_file=pki.client_key, key_file=pki.client_key)
    assert text.startswith(
        "hub.yaml:3:14: mqtt.cert_file: PKI/hub-client.key holds no certificate in PEM form"
    )
    assert tls(cert_file=pki.client_cert, key_file=pki.other_key) == [
        "hub.yaml:4:13: mqtt.key_file: PKI/other-ca.key is not the key of the certificate in "
        "mqtt.cert_file (PKI/hub-client.pem)"
    ]
    [text] = tls(cert_file=pki.client_cert, key_file=pki.client_cert)
    assert text.startswith("hub.yaml:4:13: mqtt.key_file: PKI/hub-client.pem holds no private key")


def test_an_encrypted_key_takes_its_password_from_the_environment(pki: Pki) -> None:
    path = write(
        f"""\
        mqtt:
          url: mqtts://127.0.0.1
          cert_file: {pki.client_cert}
          key_file: {pki.client_key_encrypted}
        """
    )
    # Without a password it is a problem, not a prompt on the terminal.
    assert problems(path, pki) == [
        "hub.yaml:4:13: mqtt.key_file: PKI/hub-client-encrypted.key is encrypted: give its "
        "password in $HUB_MQTT_KEY_PASSWORD (or mqtt.key_password)"
    ]
    assert problems(path, pki, env={"HUB_MQTT_KEY_PASSWORD": "wrong"}) == [
        "$HUB_MQTT_KEY_PASSWORD: mqtt.key_password: does not decrypt the key in mqtt.key_file "
        "(PKI/hub-client-encrypted.key)"
    ]
    config = load_config(path, env={"HUB_MQTT_KEY_PASSWORD": KEY_PASSWORD})
    assert config.mqtt.key_password == KEY_PASSWORD
    assert KEY_PASSWORD not in repr(config)
    assert mqtt_ssl_context(config.mqtt) is not None
