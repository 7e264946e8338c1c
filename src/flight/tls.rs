//! Who may reach the server, and over what: the rule on listen addresses,
//! credentials and TLS, and tonic's TLS config built from the PEM files.
//!
//! The rule, checked by [`check_exposure`] before anything binds:
//! - a loopback address is reachable from this machine only: no condition;
//! - any other address needs credentials (no open server on a network);
//! - and TLS, since the Basic handshake carries the password: without
//!   `tls_cert`/`tls_key` the server refuses to start unless
//!   `allow_insecure = true` says so explicitly (a TLS-terminating proxy in
//!   front, a private network), and then warns at start-up.
//!
//! With `tls_client_ca`, TLS is mutual: the handshake fails for a client
//! without a certificate signed by that CA, before any RPC (and so before
//! the Basic handshake, which still applies).

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::{FlightConfig, ServeError};

/// Longest a client may take over the TLS handshake. A TCP connection that
/// never completes it would otherwise hold its socket (and a connection
/// slot, where connections are limited) for as long as the peer keeps it
/// open.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses a config that would expose the server (see the module header);
/// warns when `allow_insecure` lets credentials travel in clear.
pub(super) fn check_exposure(config: &FlightConfig) -> Result<(), ServeError> {
    if config.tls_client_ca.is_some() && config.tls.is_none() {
        return Err(ServeError::ClientCaWithoutTls);
    }
    if config.listen.ip().is_loopback() {
        return Ok(());
    }
    if config.credentials.is_none() {
        return Err(ServeError::OpenWithoutCredentials(config.listen));
    }
    if config.tls.is_none() {
        if !config.allow_insecure {
            return Err(ServeError::CredentialsInClear(config.listen));
        }
        tracing::warn!(
            listen = %config.listen,
            "flight.allow_insecure: credentials travel in clear (no TLS on a \
             non-loopback address); set flight.tls_cert and flight.tls_key to encrypt them"
        );
    }
    Ok(())
}

/// tonic's TLS config from the PEM files, if TLS is on.
///
/// tonic parses the PEM only when a config is applied to a server, and its
/// errors do not say which file was wrong. So each file is read and checked
/// for a PEM block of the right kind on its own, then the identity (the
/// certificate with its key) is applied to a scratch server, then the client
/// CA: each error names the file, or the pair, at fault.
pub(super) fn server_tls_config(
    config: &FlightConfig,
) -> Result<Option<ServerTlsConfig>, ServeError> {
    let Some(files) = &config.tls else {
        return Ok(None);
    };
    let cert = read_pem(&files.cert, PemKind::Certificate)?;
    let key = read_pem(&files.key, PemKind::PrivateKey)?;
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(TLS_HANDSHAKE_TIMEOUT);
    check(&tls).map_err(|source| ServeError::TlsIdentity {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })?;
    let Some(ca_path) = &config.tls_client_ca else {
        return Ok(Some(tls));
    };
    let ca = read_pem(ca_path, PemKind::Certificate)?;
    // Required, not optional: a client without a certificate is refused.
    let tls = tls
        .client_ca_root(Certificate::from_pem(ca))
        .client_auth_optional(false);
    check(&tls).map_err(|source| ServeError::TlsClientCa {
        path: ca_path.clone(),
        source,
    })?;
    Ok(Some(tls))
}

/// Applies `tls` to a scratch server: tonic parses and checks it there.
fn check(tls: &ServerTlsConfig) -> Result<(), tonic::transport::Error> {
    Server::builder().tls_config(tls.clone()).map(drop)
}

/// What a TLS file must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemKind {
    Certificate,
    PrivateKey,
}

impl std::fmt::Display for PemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PemKind::Certificate => "certificate (BEGIN CERTIFICATE)",
            PemKind::PrivateKey => "private key (BEGIN PRIVATE KEY, RSA or EC PRIVATE KEY)",
        })
    }
}

/// The file's bytes, if it holds a PEM block of `kind`. Catches the usual
/// mistakes (files swapped, a DER file, an empty file) with the file's name;
/// tonic checks the rest.
fn read_pem(path: &Path, kind: PemKind) -> Result<Vec<u8>, ServeError> {
    let bytes = std::fs::read(path).map_err(|source| ServeError::TlsFile {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text.lines().map(str::trim).any(|line| {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            return false;
        };
        match kind {
            PemKind::Certificate => label == "CERTIFICATE",
            PemKind::PrivateKey => {
                matches!(label, "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY")
            }
        }
    });
    if found {
        Ok(bytes)
    } else {
        Err(ServeError::TlsPem {
            path: path.to_path_buf(),
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::SocketAddr;
    use std::path::PathBuf;

    use super::*;
    use crate::flight::{Credentials, FlightServer, TlsFiles};
    use crate::ingest::{Logger, LoggerConfig};
    use crate::query::{QueryConfig, QueryEngine};
    use crate::store::{Store, StoreConfig};

    /// A CA, a server certificate it signs for 127.0.0.1 and localhost, a
    /// client certificate it signs, and a self-signed stranger, as files.
    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Self {
            use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
            let dir = tempfile::tempdir().unwrap();
            let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text);
            let ca_key = KeyPair::generate().unwrap();
            let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "quiver test CA");
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca = ca_params.self_signed(&ca_key).unwrap();
            write("ca.pem", ca.pem()).unwrap();
            let issuer = rcgen::Issuer::new(ca_params, ca_key);
            for name in ["server", "client"] {
                let key = KeyPair::generate().unwrap();
                let mut params =
                    CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
                params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, format!("quiver test {name}"));
                let cert = params.signed_by(&key, &issuer).unwrap();
                write(&format!("{name}.pem"), cert.pem()).unwrap();
                write(&format!("{name}.key"), key.serialize_pem()).unwrap();
            }
            let key = KeyPair::generate().unwrap();
            let stranger = CertificateParams::new(vec!["localhost".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            write("stranger.pem", stranger.pem()).unwrap();
            write("stranger.key", key.serialize_pem()).unwrap();
            Self { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn server_files(&self) -> TlsFiles {
            TlsFiles {
                cert: self.path("server.pem"),
                key: self.path("server.key"),
            }
        }
    }

    fn config(
        listen: &str,
        creds: bool,
        tls: Option<TlsFiles>,
        allow_insecure: bool,
    ) -> FlightConfig {
        FlightConfig {
            listen: listen.parse::<SocketAddr>().unwrap(),
            credentials: creds.then(|| Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            tls,
            allow_insecure,
            query_threads: 1,
            ..FlightConfig::default()
        }
    }

    /// A query engine and logger on a fresh data dir (kept by the caller).
    fn engine() -> (QueryEngine, Logger, tempfile::TempDir) {
        let data = tempfile::tempdir().unwrap();
        let (store, sink) = Store::open(StoreConfig::new(data.path())).unwrap();
        let logger = Logger::start(LoggerConfig::default(), sink).unwrap();
        let engine =
            QueryEngine::new(std::sync::Arc::new(store), None, &QueryConfig::default()).unwrap();
        (engine, logger, data)
    }

    /// Every combination of loopback, credentials, TLS and allow_insecure,
    /// through `FlightServer::bind` itself: only the two exposures are
    /// refused, each with the error that names its fix.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bind_refuses_open_servers_and_passwords_in_clear() {
        let (engine, logger, _data) = engine();
        let pki = Pki::new();
        for listen in ["127.0.0.1:0", "0.0.0.0:0"] {
            for creds in [false, true] {
                for tls in [false, true] {
                    for allow_insecure in [false, true] {
                        let files = tls.then(|| pki.server_files());
                        let c = config(listen, creds, files, allow_insecure);
                        let case = format!(
                            "{listen} creds={creds} tls={tls} allow_insecure={allow_insecure}"
                        );
                        let bound = FlightServer::bind(&c, engine.clone(), logger.clone()).await;
                        let loopback = listen.starts_with("127.");
                        match bound {
                            Ok(_) => assert!(
                                loopback || (creds && (tls || allow_insecure)),
                                "{case}: bound"
                            ),
                            Err(ServeError::OpenWithoutCredentials(_)) => {
                                assert!(!loopback && !creds, "{case}");
                            }
                            Err(e @ ServeError::CredentialsInClear(_)) => {
                                assert!(!loopback && creds && !tls && !allow_insecure, "{case}");
                                let text = e.to_string();
                                for fix in ["tls_cert", "tls_key", "allow_insecure = true"] {
                                    assert!(text.contains(fix), "{case}: {text}");
                                }
                            }
                            Err(e) => panic!("{case}: {e}"),
                        }
                    }
                }
            }
        }
        drop(engine);
        logger.close().unwrap();
    }

    /// The error for these files, and its message (the first line a user
    /// reads, before the causes).
    fn tls_error(files: TlsFiles, client_ca: Option<PathBuf>) -> (ServeError, String) {
        let mut c = config("127.0.0.1:0", false, Some(files), false);
        c.tls_client_ca = client_ca;
        match server_tls_config(&c) {
            Ok(_) => panic!("accepted"),
            Err(e) => {
                let text = e.to_string();
                (e, text)
            }
        }
    }

    #[test]
    fn good_files_make_a_config_with_or_without_a_client_ca() {
        let pki = Pki::new();
        let mut c = config("127.0.0.1:0", false, Some(pki.server_files()), false);
        assert!(server_tls_config(&c).unwrap().is_some());
        c.tls_client_ca = Some(pki.path("ca.pem"));
        assert!(server_tls_config(&c).unwrap().is_some());
        c.tls = None;
        c.tls_client_ca = None;
        assert!(server_tls_config(&c).unwrap().is_none());
    }

    /// Each wrong file is named in the error's message, the pair when it is
    /// the pair that does not fit.
    #[test]
    fn bad_tls_files_are_named() {
        let pki = Pki::new();
        let good = pki.server_files();
        let named = |text: &str, path: &Path| text.contains(&path.display().to_string());

        let missing = pki.path("missing.pem");
        let (err, text) = tls_error(
            TlsFiles {
                cert: missing.clone(),
                ..good.clone()
            },
            None,
        );
        assert!(
            matches!(err, ServeError::TlsFile { .. }) && named(&text, &missing),
            "{text}"
        );

        // Swapped: the certificate file holds a key, and the key file a
        // certificate; the first is caught.
        let swapped = TlsFiles {
            cert: good.key.clone(),
            key: good.cert.clone(),
        };
        let (err, text) = tls_error(swapped, None);
        assert!(
            matches!(
                err,
                ServeError::TlsPem {
                    kind: PemKind::Certificate,
                    ..
                }
            ) && named(&text, &good.key),
            "{text}"
        );

        let empty = pki.path("empty.key");
        std::fs::write(&empty, "").unwrap();
        let (err, text) = tls_error(
            TlsFiles {
                key: empty.clone(),
                ..good.clone()
            },
            None,
        );
        assert!(
            matches!(
                err,
                ServeError::TlsPem {
                    kind: PemKind::PrivateKey,
                    ..
                }
            ) && named(&text, &empty),
            "{text}"
        );

        // Well-formed PEM, but the key is not the certificate's.
        let other_key = pki.path("client.key");
        let (err, text) = tls_error(
            TlsFiles {
                key: other_key.clone(),
                ..good.clone()
            },
            None,
        );
        assert!(
            matches!(err, ServeError::TlsIdentity { .. })
                && named(&text, &good.cert)
                && named(&text, &other_key),
            "{text}"
        );

        // A client CA whose certificate block is not base64 DER, and one
        // that is a key.
        let garbled = pki.path("garbled.pem");
        std::fs::write(
            &garbled,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let (err, text) = tls_error(good.clone(), Some(garbled.clone()));
        assert!(
            matches!(err, ServeError::TlsClientCa { .. }) && named(&text, &garbled),
            "{text}"
        );
        let (err, text) = tls_error(good.clone(), Some(good.key.clone()));
        assert!(
            matches!(
                err,
                ServeError::TlsPem {
                    kind: PemKind::Certificate,
                    ..
                }
            ) && named(&text, &good.key),
            "{text}"
        );
    }

    #[test]
    fn a_client_ca_needs_tls() {
        let pki = Pki::new();
        let mut c = config("127.0.0.1:0", false, None, false);
        c.tls_client_ca = Some(pki.path("ca.pem"));
        assert!(matches!(
            check_exposure(&c),
            Err(ServeError::ClientCaWithoutTls)
        ));
    }

    /// With a client CA the handshake needs a client certificate it signed:
    /// none, or a self-signed one, is refused; the CA's gets through.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_ca_requires_client_certificates() {
        let pki = Pki::new();
        let (engine, logger, _data) = engine();
        let mut c = config("127.0.0.1:0", false, Some(pki.server_files()), false);
        c.tls_client_ca = Some(pki.path("ca.pem"));
        let server = FlightServer::bind(&c, engine, logger.clone())
            .await
            .unwrap();
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        let read = |name: &str| std::fs::read(pki.path(name)).unwrap();
        let call = |identity: Option<Identity>| {
            let mut client_tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read("ca.pem")))
                .domain_name("localhost");
            if let Some(identity) = identity {
                client_tls = client_tls.identity(identity);
            }
            async move {
                let channel = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))?
                    .tls_config(client_tls)?
                    .connect()
                    .await?;
                arrow_flight::flight_service_client::FlightServiceClient::new(channel)
                    .list_actions(arrow_flight::Empty {})
                    .await?;
                Ok::<(), Box<dyn std::error::Error>>(())
            }
        };
        assert!(
            call(None).await.is_err(),
            "no client certificate was accepted"
        );
        let stranger = Identity::from_pem(read("stranger.pem"), read("stranger.key"));
        assert!(
            call(Some(stranger)).await.is_err(),
            "a self-signed one was accepted"
        );
        let client = Identity::from_pem(read("client.pem"), read("client.key"));
        call(Some(client))
            .await
            .expect("the CA's client certificate");
        stop.send(()).unwrap();
        served.await.unwrap().unwrap();
        logger.close().unwrap();
    }
}
