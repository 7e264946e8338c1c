//! The Arrow Flight SQL endpoint: every table and view of the `quiver` catalog
//! for ADBC, pyarrow, pandas, polars and JDBC (DBeaver), plus bulk ingest into
//! the event tables.
//!
//! - [`service`]: the `FlightSqlService` implementation (thin);
//! - [`query`]: statements executed on their own runtime, under [`QueryLimits`];
//! - [`handle`]: stateless prepared-statement handles (SQL + bound parameters);
//! - [`metadata`], [`sql_info`], [`xdbc`]: what DBeaver and ADBC browse;
//! - [`ingest`]: `CommandStatementIngest`, streamed batch by batch;
//! - [`dedup`]: ingest idempotent by `event_id`;
//! - [`upload`]: DoPut bodies bounded in bytes and idle time;
//! - [`auth`]: Basic handshake, bearer tokens, checked by a tower layer;
//! - [`tls`]: who may listen where (credentials, TLS), and the TLS config;
//! - [`conn`]: connections, capped and closed when idle;
//! - [`client`]: the client behind `quiver sql --server`;
//! - [`stats`]: query counts and durations, for `/metrics`;
//! - [`tail`]: live tails, events streamed as they commit (a JSON DoGet
//!   ticket, put in front of Flight SQL);
//! - [`error`]: every failure and its gRPC status, in one place.
//!
//! SQL from the network is read-only. Without credentials the server binds
//! loopback addresses only; with credentials but without TLS, too, unless
//! `allow_insecure` is set (see [`tls`]).

pub mod auth;
pub mod client;
mod conn;
mod dedup;
pub mod error;
pub mod handle;
pub mod ingest;
mod metadata;
pub mod query;
mod service;
mod sql_info;
pub mod stats;
pub mod tail;
mod tls;
mod upload;
mod xdbc;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tonic::transport::Server;

pub use auth::Credentials;
pub use error::FlightError;
pub use query::QueryLimits;
pub use tls::PemKind;

use crate::ingest::Logger;
use crate::query::QueryEngine;

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The server: where it listens, who may call it, and its limits.
///
/// Also the `[flight]` section of `quiver.toml`, but for the fields marked
/// skipped: those are keys elsewhere, or two keys in the file for one value
/// here, and the config fills them (`Config::flight_config`). A missing key
/// keeps its default.
///
/// `deny_unknown_fields` holds here even inside the config's `[flight]`
/// section, which flattens this struct: serde hands a flattened struct that
/// itself flattens ([`QueryLimits`]) every key the section does not name, so
/// this struct is the one that sees, and refuses, a key nobody owns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlightConfig {
    /// Skipped: the file's top-level `listen` key (also `--listen`).
    #[serde(skip)]
    pub listen: SocketAddr,
    /// Required for any non-loopback address. Skipped: in the file it is the
    /// `username` and `password` keys of `[flight]`, both or neither.
    /// Without TLS a non-loopback address also needs `allow_insecure`.
    #[serde(skip)]
    pub credentials: Option<Credentials>,
    /// How long a bearer token from the handshake stays valid, a duration
    /// (`"12h"`). Default 12 h.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Most bearer tokens kept at once; past it the oldest are evicted, and
    /// a login is never refused for want of room. Default 1024.
    pub tokens_max: usize,
    /// Skipped: in the file it is the `tls_cert` and `tls_key` keys of
    /// `[flight]`, both or neither.
    #[serde(skip)]
    pub tls: Option<TlsFiles>,
    /// PEM certificate of the CA that signs client certificates: set, TLS is
    /// mutual and a client without such a certificate is refused. Needs TLS.
    /// A key of this struct, not a field of [`TlsFiles`]: one key, one value,
    /// so no section type has to carry it.
    pub tls_client_ca: Option<PathBuf>,
    /// Lets a non-loopback address with credentials start without TLS, the
    /// password then travelling in clear (behind a TLS-terminating proxy, on
    /// a private network). Default false: such a server refuses to start.
    pub allow_insecure: bool,
    /// Its keys are `[flight]` keys themselves (`queries_max`, ...).
    #[serde(flatten)]
    pub limits: QueryLimits,
    /// Most rows one ingest request may carry. Default 1 000 000.
    pub ingest_rows_max: usize,
    /// Most bytes of Arrow data (IPC messages as sent) one ingest request
    /// may carry. Rows are validated and handed on as they arrive, so this
    /// bounds a request's length, not the memory it holds. Default 1 GiB.
    pub ingest_bytes_max: usize,
    /// Most bytes of one prepared statement's parameter upload. Default 1 MiB.
    pub params_bytes_max: usize,
    /// How long an upload (ingest rows, parameters) may send nothing before
    /// it is ended with DEADLINE_EXCEEDED, a duration. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub upload_idle_timeout: Duration,
    /// How long the server remembers the `event_id`s it has ingested, a
    /// duration: within it a resent row is known at once; past it the stored
    /// tables are searched. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub ingest_dedup_window: Duration,
    /// Most `event_id`s remembered (about 50 bytes each); past it the oldest
    /// are forgotten early. Default 1 000 000.
    pub ingest_dedup_ids_max: usize,
    /// Largest gRPC message accepted or sent, in bytes. Default 64 MiB.
    pub message_bytes_max: usize,
    /// Connections open at once; one more is accepted and closed at once, so
    /// its client fails fast. Default 1024.
    pub connections_max: usize,
    /// How long a connection may have no request in flight (a streaming
    /// response counts until it ends) before it is closed, a duration
    /// (`"5m"`). Default 5 min.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Requests in flight on one connection (HTTP/2 streams); the client
    /// waits for one to end before it opens another. Default 64.
    pub requests_per_connection_max: usize,
    /// Time between HTTP/2 keepalive pings, and the TCP idle time before the
    /// first keepalive probe, a duration (`"60s"`). Default 60 s.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a keepalive ping may go unanswered before the connection is
    /// closed, a duration (`"20s"`). Default 20 s.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// Live tails open at once (each reads the WAL on a thread of its own);
    /// one more is refused with RESOURCE_EXHAUSTED. Default 64.
    pub tails_max: usize,
    /// Bytes of batches one live tail holds for a client that reads slowly;
    /// past it the tail skips ahead and sends a gap row. Default 16 MiB.
    pub tail_buffer_bytes: usize,
    /// Threads of the query runtime. Not a config key: it follows the
    /// machine (its available parallelism).
    #[serde(skip)]
    pub query_threads: usize,
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            credentials: None,
            token_ttl: Duration::from_secs(12 * 3600),
            tokens_max: 1024,
            tls: None,
            tls_client_ca: None,
            allow_insecure: false,
            limits: QueryLimits::default(),
            ingest_rows_max: 1_000_000,
            ingest_bytes_max: 1 << 30,
            params_bytes_max: 1 << 20,
            upload_idle_timeout: Duration::from_secs(30),
            ingest_dedup_window: Duration::from_secs(600),
            ingest_dedup_ids_max: 1_000_000,
            message_bytes_max: 64 << 20,
            connections_max: 1024,
            idle_timeout: Duration::from_secs(300),
            requests_per_connection_max: 64,
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            tails_max: 64,
            tail_buffer_bytes: 16 << 20,
            query_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {0} without credentials: set flight.username and \
         flight.password, or listen on a loopback address"
    )]
    OpenWithoutCredentials(SocketAddr),
    #[error(
        "refusing to listen on {0} with credentials but without TLS: passwords would \
         travel in clear. Set flight.tls_cert and flight.tls_key, or set \
         flight.allow_insecure = true to accept that"
    )]
    CredentialsInClear(SocketAddr),
    #[error("flight.tls_client_ca is set without TLS: set flight.tls_cert and flight.tls_key")]
    ClientCaWithoutTls,
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("reading TLS file {path}")]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS file {path}: no PEM {kind} in it")]
    TlsPem { path: PathBuf, kind: PemKind },
    #[error("loading the TLS certificate {cert} with its key {key}")]
    TlsIdentity {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("loading the TLS client CA {path}")]
    TlsClientCa {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("configuring TLS")]
    Tls(#[source] tonic::transport::Error),
    #[error("starting the query runtime")]
    Runtime(#[source] std::io::Error),
    #[error("building the catalog metadata: {0}")]
    Metadata(FlightError),
    #[error("serving Flight SQL")]
    Serve(#[source] tonic::transport::Error),
}

/// Binds `addr` with an accept backlog of `connections_max`, at least 1024
/// and at most 4096 (the kernel may cap it lower): std's and tokio's 128
/// overflows in a burst of
/// connections, and the kernel then drops SYNs, so a legitimate client waits
/// a second for its retransmission while the flood is turned away.
fn listen(addr: SocketAddr, connections_max: usize) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let backlog = u32::try_from(connections_max.clamp(1024, 4096)).unwrap_or(4096);
    socket.listen(backlog)
}

/// A bound, not yet serving, Flight SQL server.
pub struct FlightServer {
    listener: TcpListener,
    addr: SocketAddr,
    router: tonic::transport::server::Router<
        tower::layer::util::Stack<
            auth::AuthLayer,
            tower::layer::util::Stack<conn::ConnLayer, tower::layer::util::Identity>,
        >,
    >,
    conn_limits: conn::ConnLimits,
    query_stats: Arc<stats::QueryStats>,
    tails: Arc<tail::Tails>,
}

impl FlightServer {
    /// Checks the config, binds the address and builds the service.
    pub async fn bind(
        config: &FlightConfig,
        engine: QueryEngine,
        logger: Logger,
    ) -> Result<Self, ServeError> {
        tls::check_exposure(config)?;
        let auth = Arc::new(auth::Authenticator::new(
            config.credentials.clone(),
            config.token_ttl,
            config.tokens_max,
        ));
        let state = engine.context().state();
        let runner = query::Runner::new(
            engine.clone(),
            config.limits.clone(),
            query::QueryRuntime::new(config.query_threads).map_err(ServeError::Runtime)?,
        );
        let query_stats = runner.stats();
        let engine_for_tails = engine.clone();
        let service = service::QuiverFlightSql {
            sql_info: sql_info::sql_info(&state).map_err(ServeError::Metadata)?,
            xdbc: xdbc::xdbc_type_info().map_err(ServeError::Metadata)?,
            runner,
            auth: auth.clone(),
            ingest: ingest::Ingest {
                logger,
                engine,
                ledger: Arc::new(dedup::Ledger::new(
                    config.ingest_dedup_window,
                    config.ingest_dedup_ids_max,
                )),
                rows_max: config.ingest_rows_max,
            },
            ingest_upload: upload::UploadLimits {
                what: "ingest",
                bytes_max: config.ingest_bytes_max,
                bytes_key: "flight.ingest_bytes_max",
                idle_timeout: config.upload_idle_timeout,
            },
            params_upload: upload::UploadLimits {
                what: "parameters",
                bytes_max: config.params_bytes_max,
                bytes_key: "flight.params_bytes_max",
                idle_timeout: config.upload_idle_timeout,
            },
        };
        let tails = Arc::new(tail::Tails::new(
            engine_for_tails,
            tail::TailLimits {
                tails_max: config.tails_max,
                buffer_bytes: config.tail_buffer_bytes,
            },
        ));
        let service = tail::WithTails {
            inner: service,
            tails: tails.clone(),
        };
        let flight = FlightServiceServer::new(service)
            .max_decoding_message_size(config.message_bytes_max)
            .max_encoding_message_size(config.message_bytes_max);
        let mut builder = Server::builder();
        if let Some(tls) = tls::server_tls_config(config)? {
            builder = builder.tls_config(tls).map_err(ServeError::Tls)?;
        }
        // A stream counts against `requests_per_connection_max` until its
        // body ends; tonic's `concurrency_limit_per_connection` would count a
        // DoGet only until its response head.
        let streams_max = u32::try_from(config.requests_per_connection_max).unwrap_or(u32::MAX);
        let router = builder
            .max_concurrent_streams(streams_max.max(1))
            .http2_keepalive_interval(Some(config.keepalive_interval))
            .http2_keepalive_timeout(Some(config.keepalive_timeout))
            // Outermost, so every request counts against the idle timeout,
            // the refused ones too.
            .layer(conn::ConnLayer)
            .layer(auth::AuthLayer::new(auth))
            .add_service(flight);
        let listener =
            listen(config.listen, config.connections_max).map_err(|source| ServeError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        Ok(Self {
            listener,
            addr,
            router,
            query_stats,
            tails,
            conn_limits: conn::ConnLimits {
                connections_max: config.connections_max,
                idle_timeout: config.idle_timeout,
                tcp_keepalive: config.keepalive_interval,
            },
        })
    }

    /// The bound address (the real port when the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counts and durations of the queries this server runs.
    pub fn query_stats(&self) -> Arc<stats::QueryStats> {
        self.query_stats.clone()
    }

    /// What its live tails are doing.
    pub fn tail_stats(&self) -> Arc<tail::TailStats> {
        self.tails.stats()
    }

    /// Serves until `shutdown` resolves, then lets running calls finish.
    ///
    /// Each connection comes in its `conn::Conn`: under the cap, with its
    /// idle timer. tonic puts its TLS, when configured, on top of it.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let incoming = conn::incoming(self.listener, self.conn_limits);
        let tails = self.tails;
        // Tails never end by themselves: end them as the server stops, so it
        // can drain.
        let shutdown = async move {
            shutdown.await;
            tails.stop();
        };
        self.router
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(ServeError::Serve)
    }
}
