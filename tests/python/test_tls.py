"""TLS end to end: `quiver serve` with a certificate from a throwaway CA,
reached by pyarrow.flight and ADBC over grpc+tls://; client certificates
(mTLS) with `tls_client_ca`; and the rule that a non-loopback address with
credentials needs TLS unless `allow_insecure = true` says otherwise."""

import datetime as dt
import ipaddress
import json
import os
import re
import subprocess
import time

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow.flight as flight
import pytest
from adbc_driver_flightsql import DatabaseOptions
from conftest import PASSWORD, USER, quiver_env, scalar, stop_server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_flight import statement_query

# Bounds every call, so a refused TLS handshake fails the test instead of hanging it.
CALL = flight.FlightCallOptions(timeout=20)


# -- a throwaway PKI ----------------------------------------------------------


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(subject, key, issuer, issuer_key, *, ca=False, usage=None):
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA; a server certificate it signs for 127.0.0.1 and localhost; a
    client certificate it signs; and a stranger CA with its own client
    certificate. PEM files in a temp dir, and their bytes."""
    out = tmp_path_factory.mktemp("pki")
    files = {}

    def write(name, data):
        path = out / name
        path.write_bytes(data)
        files[name] = {"path": str(path), "pem": data}

    for ca_name, leaves in [
        ("ca", [("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)]),
        ("stranger-ca", [("stranger-client", ExtendedKeyUsageOID.CLIENT_AUTH)]),
    ]:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        write(f"{ca_name}.pem", _pem_cert(_issue(ca_name, ca_key, ca_name, ca_key, ca=True)))
        for leaf, usage in leaves:
            key = ec.generate_private_key(ec.SECP256R1())
            write(f"{leaf}.pem", _pem_cert(_issue(leaf, key, ca_name, ca_key, usage=usage)))
            write(f"{leaf}.key", _pem_key(key))
    return files


# -- servers ------------------------------------------------------------------


def _binary():
    binary = os.environ.get("TEST_QUIVER_BIN")
    if not binary:
        pytest.fail("TEST_QUIVER_BIN must point at the quiver binary (scripts/test.sh sets it)")
    return binary


def _config(work, flight_keys):
    """A config file whose `[flight]` has the credentials and `flight_keys`."""
    path = work / "quiver.toml"
    lines = ["[flight]", f"username = {json.dumps(USER)}", f"password = {json.dumps(PASSWORD)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in flight_keys.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _args(work, flight_keys, listen):
    return [_binary(), "--config", _config(work, flight_keys), "--data-dir", str(work / "data"),
            "serve", "--listen", listen]


def start(work, flight_keys, listen="127.0.0.1:0"):
    """Starts `quiver serve`; returns (process, url, log path, log file)."""
    # conftest's start_server listens on 127.0.0.1 and expects grpc://; these
    # servers need other addresses and speak grpc+tls://.
    log_path = work / "serve.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        _args(work, flight_keys, listen), env=quiver_env(), stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        match = re.search(r"Flight SQL on (grpc(?:\+tls)?://\S+)", log_path.read_text())
        if match:
            return proc, match.group(1), log_path, log
        time.sleep(0.1)
    proc.kill()
    log.close()
    pytest.fail("quiver serve did not start:\n" + log_path.read_text())


@pytest.fixture(scope="module")
def tls_server(pki, tmp_path_factory):
    work = tmp_path_factory.mktemp("tls")
    keys = {"tls_cert": pki["server.pem"]["path"], "tls_key": pki["server.key"]["path"]}
    proc, url, _, log = start(work, keys)
    yield url
    stop_server(proc, log)


@pytest.fixture(scope="module")
def mtls_server(pki, tmp_path_factory):
    work = tmp_path_factory.mktemp("mtls")
    keys = {
        "tls_cert": pki["server.pem"]["path"],
        "tls_key": pki["server.key"]["path"],
        "tls_client_ca": pki["ca.pem"]["path"],
    }
    proc, url, _, log = start(work, keys)
    yield url
    stop_server(proc, log)


# -- clients ------------------------------------------------------------------


def pyarrow_query(client, sql="SELECT 41 + 1 AS n"):
    """Basic handshake, then a Flight SQL statement; its first value."""
    header = client.authenticate_basic_token(USER, PASSWORD, CALL)
    options = flight.FlightCallOptions(headers=[header], timeout=20)
    info = client.get_flight_info(statement_query(sql), options)
    return client.do_get(info.endpoints[0].ticket, options).read_all().column(0)[0].as_py()


def adbc_connect(url, **options):
    kwargs = {"username": USER, "password": PASSWORD}
    kwargs.update({DatabaseOptions[k.upper()].value: v for k, v in options.items()})
    return flight_sql.connect(url, db_kwargs=kwargs)


def test_the_server_announces_grpc_tls(tls_server, mtls_server):
    assert tls_server.startswith("grpc+tls://127.0.0.1:")
    assert mtls_server.startswith("grpc+tls://127.0.0.1:")


def test_pyarrow_flight_over_tls(tls_server, pki):
    client = flight.FlightClient(tls_server, tls_root_certs=pki["ca.pem"]["pem"])
    assert pyarrow_query(client) == 42
    assert pyarrow_query(client, "SELECT count(*) FROM signals") == 0


def test_adbc_over_tls(tls_server, pki):
    with adbc_connect(tls_server, tls_root_certs=pki["ca.pem"]["pem"].decode()) as conn:
        assert scalar(conn, "SELECT 41 + 1") == 42
        assert scalar(conn, "SELECT count(*) FROM signals WHERE symbol = ?", ("BTC-USD",)) == 0


def test_a_client_that_does_not_trust_the_ca_fails(tls_server, pki):
    # Trusting another CA, and trusting only the system's roots.
    for roots in [pki["stranger-ca.pem"]["pem"], None]:
        client = flight.FlightClient(tls_server, tls_root_certs=roots)
        with pytest.raises(flight.FlightError):
            pyarrow_query(client)
    with pytest.raises(adbc_driver_manager.Error):
        with adbc_connect(tls_server, tls_root_certs=pki["stranger-ca.pem"]["pem"].decode()) as c:
            scalar(c, "SELECT 1")


def test_a_plaintext_client_fails(tls_server):
    plain = tls_server.replace("grpc+tls://", "grpc://")
    with pytest.raises(flight.FlightError):
        pyarrow_query(flight.FlightClient(plain))
    with pytest.raises(adbc_driver_manager.Error):
        with adbc_connect(plain) as c:
            scalar(c, "SELECT 1")


def test_mtls_refuses_a_client_without_the_cas_certificate(mtls_server, pki):
    ca = pki["ca.pem"]["pem"]
    with pytest.raises(flight.FlightError):
        pyarrow_query(flight.FlightClient(mtls_server, tls_root_certs=ca))
    stranger = flight.FlightClient(
        mtls_server,
        tls_root_certs=ca,
        cert_chain=pki["stranger-client.pem"]["pem"],
        private_key=pki["stranger-client.key"]["pem"],
    )
    with pytest.raises(flight.FlightError):
        pyarrow_query(stranger)
    with pytest.raises(adbc_driver_manager.Error):
        with adbc_connect(mtls_server, tls_root_certs=ca.decode()) as c:
            scalar(c, "SELECT 1")


def test_mtls_accepts_the_cas_client_certificate(mtls_server, pki):
    ca = pki["ca.pem"]["pem"]
    cert, key = pki["client.pem"]["pem"], pki["client.key"]["pem"]
    client = flight.FlightClient(mtls_server, tls_root_certs=ca, cert_chain=cert, private_key=key)
    assert pyarrow_query(client) == 42
    with adbc_connect(
        mtls_server,
        tls_root_certs=ca.decode(),
        mtls_cert_chain=cert.decode(),
        mtls_private_key=key.decode(),
    ) as conn:
        assert scalar(conn, "SELECT 41 + 1") == 42


# -- passwords in clear ---------------------------------------------------------


def test_credentials_in_clear_on_an_open_address_are_refused(tmp_path):
    done = subprocess.run(
        _args(tmp_path, {}, "0.0.0.0:0"), env=quiver_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Flight SQL on" not in done.stdout
    for words in ["without TLS", "in clear", "tls_cert", "tls_key", "allow_insecure = true"]:
        assert words in done.stderr, done.stderr


def test_allow_insecure_starts_and_warns(tmp_path):
    proc, url, log_path, log = start(tmp_path, {"allow_insecure": True}, listen="0.0.0.0:0")
    try:
        assert url.startswith("grpc://")
        text = log_path.read_text()
        assert re.search(r"WARN.*credentials travel in clear", text), text
        assert pyarrow_query(flight.FlightClient(url)) == 42
    finally:
        stop_server(proc, log)


# -- the Python logger (quiver_client) -----------------------------------------


def _log_one(url, tag, **kwargs):
    """Logs one signal through quiver_client.Logger; returns its stats after a
    flush (raising TimeoutError if the server never confirmed it)."""
    from quiver_client import Logger, Signal

    at = dt.datetime.now(dt.timezone.utc)
    with Logger(url, connect_timeout_s=5.0, reconnect_backoff_max_s=0.5, **kwargs) as logger:
        logger.log(Signal(symbol="BTC-USD", signal_id=tag, mode="scalp", side="BUY", price=1.0, strength=0.5,
                          model_id="m", regime="TREND", decision_ts=at, label_cutoff_ts=at))
        logger.flush(timeout=20)
        return logger.stats()


def test_the_python_logger_over_tls_with_credentials(tls_server, pki):
    ca = pki["ca.pem"]["pem"].decode()
    stats = _log_one(tls_server, "py-tls-1", username=USER, password=PASSWORD, tls_root_certs=ca)
    assert stats.rows_sent == 1 and stats.connected
    with adbc_connect(tls_server, tls_root_certs=ca) as conn:
        assert scalar(conn, "SELECT count(*) FROM events.signals WHERE signal_id = ?", ("py-tls-1",)) == 1


def test_the_python_logger_refused_keeps_its_events_and_says_why(tls_server, pki):
    """A wrong password or an untrusted CA: nothing is confirmed, the event
    is kept (not counted as sent) and last_error says what went wrong."""
    from quiver_client import Logger, Signal

    ca = pki["ca.pem"]["pem"].decode()
    cases = [
        dict(username=USER, password="not-the-password", tls_root_certs=ca),
        dict(username=USER, password=PASSWORD, tls_root_certs=pki["stranger-ca.pem"]["pem"].decode()),
    ]
    for kwargs in cases:
        at = dt.datetime.now(dt.timezone.utc)
        logger = Logger(tls_server, connect_timeout_s=5.0, reconnect_backoff_max_s=0.5, **kwargs)
        try:
            logger.log(Signal(symbol="BTC-USD", signal_id="py-tls-refused", mode="scalp", side="BUY", price=1.0,
                              strength=0.5, model_id="m", regime="TREND", decision_ts=at, label_cutoff_ts=at))
            with pytest.raises(TimeoutError):
                logger.flush(timeout=3)
            stats = logger.stats()
            assert stats.rows_sent == 0 and stats.durable == 0 and not stats.connected, stats
            assert stats.last_error, stats
        finally:
            logger.close(timeout=0.5)
    with adbc_connect(tls_server, tls_root_certs=ca) as conn:
        assert scalar(conn, "SELECT count(*) FROM events.signals WHERE signal_id = ?", ("py-tls-refused",)) == 0


def test_the_python_logger_over_mtls(mtls_server, pki):
    ca = pki["ca.pem"]["pem"].decode()
    cert, key = pki["client.pem"]["pem"].decode(), pki["client.key"]["pem"].decode()
    stats = _log_one(mtls_server, "py-mtls-1", username=USER, password=PASSWORD, tls_root_certs=ca,
                     mtls_cert_chain=cert, mtls_private_key=key)
    assert stats.rows_sent == 1
    with adbc_connect(mtls_server, tls_root_certs=ca, mtls_cert_chain=cert, mtls_private_key=key) as conn:
        assert scalar(conn, "SELECT count(*) FROM events.signals WHERE signal_id = ?", ("py-mtls-1",)) == 1
