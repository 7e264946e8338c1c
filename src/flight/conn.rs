//! Connections: how many may be open at once, and how long one may sit idle.
//!
//! Every accepted TCP connection takes one of `connections_max` slots, owned
//! by its IO wrapper ([`Conn`]) and given back when tonic drops it. At the
//! cap a new connection is accepted and closed at once: its client fails fast
//! instead of waiting in the listen backlog for a slot that may never come.
//!
//! Idle means no request in flight. [`ConnLayer`] counts a request from the
//! moment tonic hands it to the service until its response body ends or is
//! dropped: a DoGet streams long after its response future has finished. The
//! wrapper's reads watch the count, and once it has stayed at zero for
//! `idle_timeout` the next read fails, so hyper closes the connection. The
//! wrapper sits under tonic's TLS (tonic wraps the IO it is given), so a
//! connection that never finishes its handshake, or never speaks HTTP/2, is
//! idle too.
//!
//! Bytes alone do not make a connection busy: HTTP/2 keepalive pings would
//! keep every connection open forever.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// Bytes just read may hold a request that hyper has read but not yet handed
/// to the service (it does so from the stream's own task): a connection due
/// to close this soon after a read gets this long once more, once per lull,
/// so that a client pinging faster than this cannot keep it open.
const DISPATCH_GRACE: Duration = Duration::from_secs(1);

/// How long the accept loop pauses after an error that is not one
/// connection's (out of file descriptors): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Durations past this are taken as this (about 30 years): an instant plus
/// `Duration::MAX` would overflow.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 86_400);

/// The connection limits the accept loop and each [`Conn`] apply.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnLimits {
    /// Connections open at once; one more is closed as soon as accepted.
    pub connections_max: usize,
    /// How long a connection may have no request in flight.
    pub idle_timeout: Duration,
    /// Idle time before the first TCP keepalive probe.
    pub tcp_keepalive: Duration,
}

/// What a connection's IO wrapper and the requests it carries share.
#[derive(Debug)]
pub struct ConnState {
    born: Instant,
    in_flight: AtomicUsize,
    /// When `in_flight` last fell to zero, in nanoseconds since `born`.
    idle_since_nanos: AtomicU64,
}

impl ConnState {
    fn new() -> Self {
        Self {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_nanos: AtomicU64::new(0),
        }
    }

    /// Counts a request in flight until the guard is dropped.
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Since when nothing has been in flight; `None` while something is.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let nanos = self.idle_since_nanos.load(Ordering::Acquire);
        Some(self.born + Duration::from_nanos(nanos))
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // The time goes in before the count goes down: a reader that sees
        // zero must not see the idle time of an earlier lull, or it would
        // close a connection whose last response has not left yet.
        let nanos = u64::try_from(self.0.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.0.idle_since_nanos.fetch_max(nanos, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection as tonic sees it in a request's extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    state: Arc<ConnState>,
    /// Passed on to each request, where tonic's `Request::remote_addr`
    /// looks for it.
    tcp: TcpConnectInfo,
}

/// An accepted connection: its IO, its slot under `connections_max`, and the
/// idle timer its reads watch.
#[derive(Debug)]
pub struct Conn<IO> {
    io: IO,
    info: ConnInfo,
    idle_timeout: Duration,
    /// Armed at the next moment the connection may be found idle.
    idle: Pin<Box<Sleep>>,
    last_read: Option<Instant>,
    /// The lull (by its start) that has had its [`DISPATCH_GRACE`], and
    /// when that ends.
    graced: Option<(Instant, Instant)>,
    closed: bool,
    _slot: OwnedSemaphorePermit,
}

impl<IO> Conn<IO> {
    pub fn new(
        io: IO,
        tcp: TcpConnectInfo,
        slot: OwnedSemaphorePermit,
        idle_timeout: Duration,
    ) -> Self {
        let state = Arc::new(ConnState::new());
        let idle_timeout = idle_timeout.min(FOREVER);
        Self {
            io,
            idle: Box::pin(tokio::time::sleep_until(state.born + idle_timeout)),
            info: ConnInfo { state, tcp },
            idle_timeout,
            last_read: None,
            graced: None,
            closed: false,
            _slot: slot,
        }
    }

    /// Ready once the connection has been idle for `idle_timeout`; until
    /// then the timer is armed to wake the reader when that may be so.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let now = Instant::now();
            let due = match self.info.state.idle_since() {
                Some(since) => {
                    let mut due = since + self.idle_timeout;
                    if due <= now {
                        let grace = match self.graced {
                            Some((lull, until)) if lull == since => Some(until),
                            _ => self
                                .last_read
                                .map(|read| read + DISPATCH_GRACE)
                                .filter(|until| *until > now),
                        };
                        if let Some(until) = grace {
                            self.graced = Some((since, until));
                            due = until;
                        }
                        if due <= now {
                            return Poll::Ready(());
                        }
                    }
                    due
                }
                // Busy: look again a timeout from now, once the last look is due.
                None if self.idle.is_elapsed() => now + self.idle_timeout,
                None => self.idle.deadline(),
            };
            if self.idle.deadline() != due {
                self.idle.as_mut().reset(due);
            }
            ready!(self.idle.as_mut().poll(cx));
        }
    }

    fn idle_error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no request for {:?}: idle connection closed",
                self.idle_timeout
            ),
        )
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Conn<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closed {
            let before = buf.filled().len();
            if let Poll::Ready(read) = Pin::new(&mut this.io).poll_read(cx, buf) {
                if buf.filled().len() > before {
                    this.last_read = Some(Instant::now());
                }
                return Poll::Ready(read);
            }
            ready!(this.poll_idle(cx));
            this.closed = true;
            tracing::debug!(
                remote = ?this.info.tcp.remote_addr(),
                idle_timeout = ?this.idle_timeout,
                "closing an idle connection"
            );
        }
        Poll::Ready(Err(this.idle_error()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Conn<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO> Connected for Conn<IO> {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// The connections accepted from `listener`, each in its [`Conn`], with
/// `TCP_NODELAY` and TCP keepalive set; past the cap, closed at once.
pub(super) fn incoming(
    listener: TcpListener,
    limits: ConnLimits,
) -> impl Stream<Item = Result<Conn<TcpStream>, io::Error>> {
    // Replies are small and latency-bound (a handshake, a FlightInfo):
    // Nagle's algorithm would hold each one back for a delayed ACK, ~40 ms.
    let tcp = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(limits.tcp_keepalive));
    let accept = Accept {
        tcp,
        slots: Arc::new(Semaphore::new(limits.connections_max.max(1))),
        limits,
        refused: 0,
    };
    futures::stream::unfold(accept, |mut accept| async move {
        let conn = accept.next().await?;
        Some((Ok(conn), accept))
    })
}

struct Accept {
    tcp: TcpIncoming,
    slots: Arc<Semaphore>,
    limits: ConnLimits,
    /// Connections closed at the cap since the server started.
    refused: u64,
}

impl Accept {
    /// The next connection admitted; `None` once the listener is gone.
    async fn next(&mut self) -> Option<Conn<TcpStream>> {
        loop {
            let stream = match self.tcp.next().await? {
                Ok(stream) => stream,
                Err(e) => {
                    self.pause_on(e).await;
                    continue;
                }
            };
            let tcp = stream.connect_info();
            match self.slots.clone().try_acquire_owned() {
                Ok(slot) => return Some(Conn::new(stream, tcp, slot, self.limits.idle_timeout)),
                Err(_) => {
                    self.refused += 1;
                    tracing::debug!(
                        remote = ?tcp.remote_addr(),
                        connections_max = self.limits.connections_max,
                        refused = self.refused,
                        "connection closed: at the connection cap"
                    );
                }
            }
        }
    }

    /// An error of one connection (reset before it was accepted) is skipped;
    /// any other pauses the loop, since the listener would fail again at once.
    async fn pause_on(&self, e: io::Error) {
        use io::ErrorKind::*;
        if matches!(
            e.kind(),
            ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | TimedOut
        ) {
            return;
        }
        tracing::warn!(error = %e, "accepting a connection failed; pausing the accept loop");
        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
    }
}

/// The tower layer that counts each connection's requests in flight, for
/// [`Conn`]'s idle timeout.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnLayer;

impl<S> tower::Layer<S> for ConnLayer {
    type Service = ConnService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConnService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct ConnService<S> {
    inner: S,
}

/// A response body that holds its request's place in flight until it is
/// dropped, which hyper does once the body has ended (or the stream is
/// reset). `Pin` of it is the body: http-body's impl for `Pin<P>` delegates
/// to `P`'s target, so the count rides along without re-implementing the
/// body trait.
#[derive(Debug)]
pub struct InFlightBody<B> {
    body: B,
    _in_flight: Option<InFlight>,
}

impl<B> std::ops::Deref for InFlightBody<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.body
    }
}

impl<B> std::ops::DerefMut for InFlightBody<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.body
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for ConnService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Unpin,
{
    type Response = http::Response<Pin<InFlightBody<R>>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let info = request.extensions().get::<ConnInfo>().cloned();
        let in_flight = info.map(|info| {
            request.extensions_mut().insert(info.tcp.clone());
            info.state.begin()
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                Pin::new(InFlightBody {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const IDLE: Duration = Duration::from_millis(200);

    fn in_flight(state: &ConnState) -> usize {
        state.in_flight.load(Ordering::Acquire)
    }

    fn conn(io: tokio::io::DuplexStream, slots: &Arc<Semaphore>) -> Conn<tokio::io::DuplexStream> {
        let tcp = TcpConnectInfo {
            local_addr: None,
            remote_addr: None,
        };
        let slot = slots.clone().try_acquire_owned().unwrap();
        Conn::new(io, tcp, slot, IDLE)
    }

    /// Reads until the wrapper closes the connection; how long that took.
    async fn closed_after(conn: &mut Conn<tokio::io::DuplexStream>) -> Duration {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) => panic!("EOF, not the idle timeout"),
                Ok(_) => continue,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
                    return start.elapsed();
                }
            }
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_and_gives_back_its_slot() {
        let slots = Arc::new(Semaphore::new(1));
        let (_client, server) = tokio::io::duplex(64);
        let mut conn = conn(server, &slots);
        assert_eq!(slots.available_permits(), 0);
        let waited = closed_after(&mut conn).await;
        assert!(waited >= IDLE - Duration::from_millis(20), "{waited:?}");
        assert!(waited < IDLE * 5, "{waited:?}");
        // Closed stays closed.
        assert!(conn.read(&mut [0u8; 8]).await.is_err());
        drop(conn);
        assert_eq!(slots.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_request_in_flight_keeps_it_open_until_it_ends() {
        let slots = Arc::new(Semaphore::new(1));
        let (_client, server) = tokio::io::duplex(64);
        let mut conn = conn(server, &slots);
        let state = conn.info.state.clone();
        let request = state.begin();
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(IDLE * 3, conn.read(&mut buf)).await;
        assert!(read.is_err(), "closed with a request in flight: {read:?}");
        let ended = Instant::now();
        drop(request);
        assert_eq!(in_flight(&state), 0);
        closed_after(&mut conn).await;
        let idle = ended.elapsed();
        assert!(idle >= IDLE - Duration::from_millis(20), "{idle:?}");
    }

    #[tokio::test]
    async fn bytes_alone_do_not_keep_it_open() {
        let slots = Arc::new(Semaphore::new(1));
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = conn(server, &slots);
        let pings = tokio::spawn(async move {
            for _ in 0..40 {
                if client.write_all(b"ping").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        // Closed within the grace after a read, well before the pings stop.
        let waited = closed_after(&mut conn).await;
        assert!(waited < DISPATCH_GRACE + IDLE * 3, "{waited:?}");
        pings.abort();
    }

    /// A service answering every request with a body, for the layer.
    #[derive(Clone)]
    struct Answer;

    impl tower::Service<http::Request<()>> for Answer {
        type Response = http::Response<String>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        /// Whether the layer passed the TCP info on, where tonic's
        /// `Request::remote_addr` looks for it.
        fn call(&mut self, request: http::Request<()>) -> Self::Future {
            let tcp = request.extensions().get::<TcpConnectInfo>().is_some();
            std::future::ready(Ok(http::Response::new(format!("tcp info: {tcp}"))))
        }
    }

    #[tokio::test]
    async fn the_layer_counts_a_request_until_its_body_is_dropped() {
        use tower::{Layer, Service};
        let slots = Arc::new(Semaphore::new(1));
        let (_client, server) = tokio::io::duplex(64);
        let conn = conn(server, &slots);
        let state = conn.info.state.clone();
        let mut service = ConnLayer.layer(Answer);
        let mut request = http::Request::new(());
        request.extensions_mut().insert(conn.connect_info());
        let response = service.call(request).await.unwrap();
        assert_eq!(in_flight(&state), 1, "the body still streams");
        assert!(state.idle_since().is_none());
        let body = response.into_body();
        assert_eq!(body.as_str(), "tcp info: true");
        drop(body);
        assert_eq!(in_flight(&state), 0);
        let since = state.idle_since().unwrap();
        assert!(since.elapsed() < Duration::from_secs(1));

        // A request that did not come through a `Conn` passes, uncounted.
        let response = service.call(http::Request::new(())).await.unwrap();
        assert_eq!(in_flight(&state), 0);
        assert_eq!(response.into_body().as_str(), "tcp info: false");
    }

    #[tokio::test]
    async fn past_the_cap_a_connection_is_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnLimits {
            connections_max: 1,
            idle_timeout: Duration::from_secs(60),
            tcp_keepalive: Duration::from_secs(60),
        };
        let mut incoming = Box::pin(incoming(listener, limits));
        let _first = TcpStream::connect(addr).await.unwrap();
        let held = incoming.next().await.unwrap().unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        // The accept loop runs while it looks for the next admitted one.
        let next = tokio::spawn(async move {
            let conn = incoming.next().await;
            (conn, incoming)
        });
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_secs(2), second.read(&mut buf))
            .await
            .expect("the connection over the cap was left open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // Its slot back, the next connection is admitted.
        drop(held);
        let _third = TcpStream::connect(addr).await.unwrap();
        let (conn, _incoming) = tokio::time::timeout(Duration::from_secs(2), next)
            .await
            .unwrap()
            .unwrap();
        assert!(conn.unwrap().is_ok());
    }
}
