//! The HTTP server of a standalone function and of `berth serve`: hyper's HTTP/1 over a bounded
//! set of connections that no client can hold for long, nor take all of (see [`HttpLimits`]).
//!
//! - A request's headers must arrive within `header_read_timeout` (hyper), each part of its body
//!   within `body_idle_timeout`, and the whole body within `request_timeout` of the headers, or
//!   `anonymous_request_timeout` while no credential of the request has been verified: a 408.
//! - A write the client takes nothing of for `write_timeout` drops the connection, and with it
//!   the answer's memory.
//! - One client address holds at most `max_connections_per_address`: past it, its own oldest idle
//!   connection is closed, else the new one is refused.
//! - From 7/8 of `max_connections` on, each new connection closes the oldest idle one (a
//!   connection that has not begun a request within a second counts as idle); at the cap, the
//!   oldest idle one, else the oldest still sending a body no credential vouches for, else the
//!   oldest just opened. A connection doing authenticated work, or whose request has fully
//!   arrived, is never closed to make room: at the cap with nothing else open, the next
//!   connection waits to be admitted.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::platform::config::HttpLimits;
use crate::platform::write_deadline::WriteDeadline;

/// Time a graceful shutdown waits for in-flight work.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The error a request body ends with when it misses its deadline (read as a 408).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within its deadline")]
pub struct BodyDeadline;

/// Tells the server that a request's credential has been verified: its body gets the longer
/// `request_timeout`, and its connection is no longer closed to make room for others. Called
/// by the extractors that verify credentials; a no-op outside [`serve_http`] (Lambda, tests).
pub fn mark_authenticated(extensions: &http::Extensions) {
    if let Some(RequestTrust(trust)) = extensions.get::<RequestTrust>() {
        trust.authenticated.store(true, Ordering::Relaxed);
        trust.connection.enter(Phase::Working);
    }
}

/// A request's standing, in its extensions.
#[derive(Clone)]
struct RequestTrust(Arc<Trust>);

struct Trust {
    authenticated: AtomicBool,
    connection: Arc<Connection>,
    arrived: Instant,
    limits: HttpLimits,
}

impl Trust {
    /// When the whole body is due.
    fn due(&self) -> Instant {
        let allowed = match self.authenticated.load(Ordering::Relaxed) {
            true => self.limits.request_timeout,
            false => self.limits.anonymous_request_timeout,
        };
        self.arrived + allowed
    }
}

/// What a connection is doing, which decides whether it may be closed for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Just opened, its first request not yet begun: counted idle once [`NEW_GRACE`] has passed.
    New = 3,
    /// No request in progress: kept alive after an answer.
    Idle = 0,
    /// A request's body is arriving and no credential has vouched for it.
    Receiving = 1,
    /// An authenticated request, or one fully arrived, is handled or answered.
    Working = 2,
}

struct Connection {
    id: u64,
    address: IpAddr,
    phase: AtomicU8,
    /// When the phase began (milliseconds since the server started): the oldest goes first.
    since: AtomicU64,
    epoch: Instant,
    close: CancellationToken,
}

impl Connection {
    fn enter(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
        self.since.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Idle,
            1 => Phase::Receiving,
            3 => Phase::New,
            _ => Phase::Working,
        }
    }

    /// Whether it may be closed as idle, at `now` (milliseconds since the server started).
    fn idle(&self, now: u64) -> bool {
        match self.phase() {
            Phase::Idle => true,
            Phase::New => now.saturating_sub(self.since.load(Ordering::Relaxed)) >= NEW_GRACE.as_millis() as u64,
            Phase::Receiving | Phase::Working => false,
        }
    }
}

/// How long a new connection has to begin its request before it counts as idle: an honest
/// client sends its headers at once, and a fresh connection must not be the first closed for
/// the next (the idle ones of an attack are older).
const NEW_GRACE: Duration = Duration::from_secs(1);

/// The open connections, by age and by client address.
struct Connections {
    limits: HttpLimits,
    epoch: Instant,
    open: Mutex<Open>,
    /// Signalled whenever a connection ends, for an admission waiting at the cap.
    freed: tokio::sync::Notify,
}

#[derive(Default)]
struct Open {
    by_id: BTreeMap<u64, Arc<Connection>>,
    per_address: HashMap<IpAddr, usize>,
    next_id: u64,
}

enum Admission {
    In(Arc<Connection>),
    /// Its address holds its share and none of its connections is idle.
    Refused,
    /// At the cap, every connection doing work that may not be cut.
    Full,
}

impl Open {
    /// The connection longest in a phase `wanted` accepts.
    fn oldest(&self, wanted: impl Fn(&Connection) -> bool) -> Option<u64> {
        self.by_id.values().filter(|c| wanted(c)).min_by_key(|c| c.since.load(Ordering::Relaxed)).map(|c| c.id)
    }

    fn close(&mut self, id: u64) {
        if let Some(connection) = self.by_id.remove(&id) {
            if let Some(count) = self.per_address.get_mut(&connection.address) {
                *count -= 1;
                if *count == 0 {
                    self.per_address.remove(&connection.address);
                }
            }
            connection.close.cancel();
        }
    }
}

impl Connections {
    fn new(limits: HttpLimits) -> Self {
        Self { limits, epoch: Instant::now(), open: Mutex::default(), freed: tokio::sync::Notify::new() }
    }

    fn admit(&self, address: IpAddr) -> Admission {
        let now = self.epoch.elapsed().as_millis() as u64;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.per_address.get(&address).copied().unwrap_or(0) >= self.limits.max_connections_per_address {
            match open.oldest(|c| c.address == address && c.idle(now)) {
                Some(id) => open.close(id),
                None => return Admission::Refused,
            }
        }
        let max = self.limits.max_connections;
        if open.by_id.len() >= max - max / 8
            && let Some(id) = open.oldest(|c| c.idle(now))
        {
            open.close(id);
        }
        if open.by_id.len() >= max {
            // Still idle here: those just opened, the newest of which may be an honest client
            // about to send its request; they go last, oldest first.
            let receiving = open.oldest(|c| c.phase() == Phase::Receiving);
            match receiving.or_else(|| open.oldest(|c| c.phase() == Phase::New)) {
                Some(id) => open.close(id),
                None => return Admission::Full,
            }
        }
        open.next_id += 1;
        let connection = Arc::new(Connection {
            id: open.next_id,
            address,
            phase: AtomicU8::new(Phase::New as u8),
            since: AtomicU64::new(now),
            epoch: self.epoch,
            close: CancellationToken::new(),
        });
        open.by_id.insert(connection.id, connection.clone());
        *open.per_address.entry(address).or_default() += 1;
        Admission::In(connection)
    }

    fn ended(&self, id: u64) {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).close(id);
        self.freed.notify_one();
    }
}

/// Listens on `address` with room for [`LISTEN_BACKLOG`] connections not yet accepted (the
/// kernel caps it at `net.core.somaxconn`): a burst of connections (attackers reconnecting at
/// once) waits there instead of having its handshakes dropped, which costs an honest client a
/// one-second retransmission.
pub fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Connections the kernel holds for [`serve_http`] to accept.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Serves `router` on `listener` until `shutdown`, letting in-flight requests finish (for up to
/// [`SHUTDOWN_GRACE`]), with every connection bounded as the module says.
pub async fn serve_http(
    router: Router,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
    limits: HttpLimits,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let limits = within_open_files(limits);
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_idle_timeout));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let connections = Arc::new(Connections::new(limits));
    // Every connection's task holds a receiver: the sender is closed once all have ended.
    // (hyper-util's GracefulShutdown cannot watch a connection that may be upgraded.)
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let connection = loop {
            match connections.admit(peer.ip()) {
                Admission::In(connection) => break Some(connection),
                Admission::Refused => break None,
                Admission::Full => tokio::select! {
                    _ = connections.freed.notified() => {}
                    _ = shutdown.cancelled() => break None,
                },
            }
        };
        // Refused: dropping the stream closes it.
        let Some(connection) = connection else { continue };
        let service = service(router.clone(), connection.clone(), limits);
        let io = TokioIo::new(WriteDeadline::new(stream, limits.write_timeout));
        // With upgrades: agents hold their wake channel (a WebSocket) on a connection of theirs,
        // which leaves this set once upgraded (only a host token opens one, one per host).
        let served = http.serve_connection(io, service).with_upgrades();
        let (connections, open, shutdown) = (connections.clone(), open_rx.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _open = open;
            let mut served = std::pin::pin!(served);
            // A client that went away, timed out or was closed for another is no error of ours;
            // dropping the connection frees its buffers and any answer it held.
            tokio::select! {
                _ = served.as_mut() => {}
                _ = connection.close.cancelled() => {}
                _ = shutdown.cancelled() => {
                    // In-flight requests finish; idle keep-alive connections close now.
                    served.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = served => {}
                        _ = connection.close.cancelled() => {}
                    }
                }
            }
            connections.ended(connection.id);
        });
    }
    drop(listener);
    drop(open_rx);
    if tokio::time::timeout(SHUTDOWN_GRACE, open_tx.closed()).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace; stopping anyway");
    }
    Ok(())
}

/// Files kept for what is not a client's connection: the listener, the store's files, outgoing
/// connections (S3, SQS, the registry), the metrics listener.
const RESERVED_FILES: u64 = 256;

/// `limits` with `max_connections` within the files the process may open, its soft limit raised
/// to the hard one first (often 1024 against 524288): past that limit, accepting fails before
/// the cap's fairness (the oldest idle connection closed for a new one) can apply, and idle
/// sockets would keep everyone else out.
fn within_open_files(mut limits: HttpLimits) -> HttpLimits {
    let mut files = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    let allowed = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut files) != 0 {
            return limits;
        }
        if files.rlim_cur < files.rlim_max {
            let raised = libc::rlimit { rlim_cur: files.rlim_max, rlim_max: files.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                files = raised;
            }
        }
        files.rlim_cur
    };
    let room = usize::try_from(allowed.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX).max(1);
    if limits.max_connections > room {
        tracing::warn!(
            max_connections = limits.max_connections,
            open_files = allowed,
            "BERTH_HTTP_MAX_CONNECTIONS is over what the open-files limit leaves; serving {room} at most"
        );
        limits.max_connections = room;
    }
    limits
}

/// One connection's service: each request gets its deadline and its connection's phase.
fn service(
    router: Router,
    connection: Arc<Connection>,
    limits: HttpLimits,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<Body>, Infallible>> + Send,
> + Clone {
    let serve = move |request: http::Request<hyper::body::Incoming>| {
        let (router, connection) = (router.clone(), connection.clone());
        async move {
            let (mut parts, body) = request.into_parts();
            connection.enter(if body.is_end_stream() { Phase::Working } else { Phase::Receiving });
            let trust = Arc::new(Trust {
                authenticated: AtomicBool::new(false),
                connection: connection.clone(),
                arrived: Instant::now(),
                limits,
            });
            parts.extensions.insert(RequestTrust(trust.clone()));
            let sleep = Box::pin(tokio::time::sleep_until(trust.due().into()));
            let body = Body::new(DeadlineBody { inner: body, trust, sleep });
            let Ok(response) = router.oneshot(http::Request::from_parts(parts, body)).await;
            Ok(response.map(|body| Body::new(Answer { inner: body, connection })))
        }
    };
    hyper::service::service_fn(serve)
}

/// A request body that fails with [`BodyDeadline`] once its request's deadline passes.
struct DeadlineBody {
    inner: hyper::body::Incoming,
    trust: Arc<Trust>,
    sleep: Pin<Box<Sleep>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.trust.connection.enter(Phase::Working);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.trust.connection.enter(Phase::Working);
                } else if Instant::now() > this.trust.due() {
                    return Poll::Ready(Some(Err(Box::new(BodyDeadline))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Pending => loop {
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Authenticated since the timer was set: wait on to the longer deadline.
                let due = this.trust.due();
                if due > this.sleep.deadline().into_std() {
                    this.sleep.as_mut().reset(due.into());
                    continue;
                }
                return Poll::Ready(Some(Err(Box::new(BodyDeadline))));
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An answer's body: once hyper is done with it, its connection is idle again.
struct Answer {
    inner: Body,
    connection: Arc<Connection>,
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.connection.enter(Phase::Idle);
    }
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
