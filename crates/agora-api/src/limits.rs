//! What every HTTP server of Agora (a node's API, a provider, the gateway) lets strangers take:
//! at most `max_in_flight` requests at once, and at most `per_client` of them from one IP
//! address. A request over either limit is answered at once (503 or 429, with `Retry-After`),
//! never queued, so a flood costs the server a refusal per request, not memory or time. A
//! request holds its place until its answer's body has been sent: a streamed answer or an event
//! stream counts for as long as it runs.
//!
//! A request that comes from loopback but *forwards* for someone (`X-Forwarded-For` or
//! `Forwarded`, as a reverse proxy on this machine adds) is counted as the client it forwards
//! for, never trusted: the last address in the header, the one the nearest proxy saw (earlier
//! ones are the client's own claims). Only loopback peers are believed, so a stranger cannot
//! choose its client address by sending the header itself.
//!
//! The per-address limit needs the peer's address: serve the router with
//! [`axum::Router::into_make_service_with_connect_info`] (`SocketAddr`); without it, only the
//! total applies.

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http_body::{Frame, SizeHint};
use parking_lot::Mutex;
use serde_json::json;
use std::{
    collections::BTreeMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many requests a server serves at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// In flight, from everyone.
    pub max_in_flight: usize,
    /// In flight, from one client: one IPv4 address, or one IPv6 /64 (what one host is given).
    pub per_client: usize,
    /// Longest a request may take to be answered (reading its body included); the answer's body
    /// may stream for longer. `None`: no limit (inference takes as long as it takes).
    pub timeout: Option<Duration>,
    /// Whether requests from this machine (loopback) are spared the per-client limit: they come
    /// from the operator's own services (a gateway, a provider, a verifier calling their node),
    /// which bring many users' requests through one address. The total still applies.
    pub trust_loopback: bool,
}

impl Limits {
    /// A node's API: cheap reads, answered within 30 s.
    pub const NODE_API: Limits = Limits {
        max_in_flight: 512,
        per_client: 32,
        timeout: Some(Duration::from_secs(30)),
        trust_loopback: true,
    };
    /// A node's `POST /v1/txs`: bodies up to 8 MiB, so few at once (at most 256 MiB buffered).
    pub const SUBMIT: Limits = Limits {
        max_in_flight: 32,
        per_client: 8,
        timeout: Some(Duration::from_secs(30)),
        trust_loopback: true,
    };
    /// A node's `POST /v1/search/reports`: bodies up to about 5 MiB, each audited again, so
    /// few at once.
    pub const PUBLISH: Limits = Limits {
        max_in_flight: 16,
        per_client: 2,
        timeout: Some(Duration::from_secs(30)),
        trust_loopback: true,
    };
    /// A node's event streams: long-lived, so few, and a handful per client.
    pub const EVENTS: Limits = Limits {
        max_in_flight: 128,
        per_client: 4,
        timeout: None,
        trust_loopback: true,
    };
    /// A provider: each request is an inference job (its own queue bounds the work); a gateway
    /// is one address that brings many users' jobs.
    pub const PROVIDER: Limits = Limits {
        max_in_flight: 256,
        per_client: 128,
        timeout: None,
        trust_loopback: true,
    };
    /// The gateway: each request waits on a provider.
    pub const GATEWAY: Limits = Limits {
        max_in_flight: 512,
        per_client: 64,
        timeout: None,
        trust_loopback: true,
    };
    /// The gateway's requests in flight per API key ([`limit_per_key`]).
    pub const GATEWAY_PER_KEY: usize = 32;
}

/// `router` with `limits` applied to every route it has (not to routes added after).
pub fn limit<S: Clone + Send + Sync + 'static>(router: Router<S>, limits: Limits) -> Router<S> {
    let gate = Gate {
        total: Arc::new(Semaphore::new(limits.max_in_flight)),
        clients: Arc::new(Mutex::new(BTreeMap::new())),
        per_client: limits.per_client,
        timeout: limits.timeout,
        trust_loopback: limits.trust_loopback,
    };
    router.layer(axum::middleware::from_fn_with_state(gate, guard))
}

#[derive(Clone)]
struct Gate {
    total: Arc<Semaphore>,
    /// Requests in flight per client; a client leaves the map when it has none, so the map
    /// never holds more entries than requests in flight.
    clients: Arc<Mutex<BTreeMap<IpAddr, usize>>>,
    per_client: usize,
    timeout: Option<Duration>,
    trust_loopback: bool,
}

/// The client an address belongs to: an IPv4 address, or the /64 of an IPv6 one (a host gets a
/// whole /64, so counting its addresses one by one would give it 2^64 clients).
fn client_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::V6(octets.into())
        }
        v4 => v4,
    }
}

/// One request's place from one address.
type ClientSlot = Slot<IpAddr>;

/// One request's place in a count per key (a client's address, an API key), given back when
/// dropped; a key leaves its map when it has no place left.
struct Slot<K: Ord> {
    clients: Arc<Mutex<BTreeMap<K, usize>>>,
    ip: K,
}

impl<K: Ord> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut clients = self.clients.lock();
        if let Some(n) = clients.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                clients.remove(&self.ip);
            }
        }
    }
}

impl Gate {
    /// A place for a request (or connection) from address `peer`: `None` when its client
    /// ([`client_of`]) has used its share; `Some(None)` when it is not counted (a trusted local
    /// one, IPv4 or IPv6 loopback).
    fn enter(&self, peer: IpAddr) -> Option<Option<ClientSlot>> {
        self.enter_as(peer, false)
    }

    /// [`Self::enter`]; a `forwarded` address (a client a local proxy forwards for) is never
    /// trusted.
    fn enter_as(&self, peer: IpAddr, forwarded: bool) -> Option<Option<ClientSlot>> {
        if self.trust_loopback && !forwarded && peer.to_canonical().is_loopback() {
            return Some(None);
        }
        let ip = client_of(peer);
        let mut clients = self.clients.lock();
        let n = clients.get(&ip).copied().unwrap_or(0);
        if n >= self.per_client {
            return None;
        }
        clients.insert(ip, n + 1);
        Some(Some(ClientSlot {
            clients: self.clients.clone(),
            ip,
        }))
    }
}

async fn guard(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // A local proxy's request is its client's.
    let client = client.map(|ip| match ip.to_canonical().is_loopback() {
        true => forwarded_for(request.headers()).map_or((ip, false), |f| (f, true)),
        false => (ip, false),
    });
    let slot = match client {
        Some((ip, forwarded)) => match gate.enter_as(ip, forwarded) {
            Some(slot) => slot,
            None => {
                return refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "too many requests in flight from this address; retry later",
                );
            }
        },
        None => None,
    };
    let Ok(permit) = gate.total.clone().try_acquire_owned() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the server is serving as many requests as it takes; retry later",
        );
    };
    let response = match gate.timeout {
        None => next.run(request).await,
        Some(limit) => match tokio::time::timeout(limit, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                return refuse(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    "the request took too long (a slow upload, or a server too busy); retry",
                );
            }
        },
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        Body::new(Held {
            body,
            _place: Box::new((permit, slot)),
        }),
    )
}

/// A gateway's routes within a gateway's limits: requests in flight in total and per client
/// ([`Limits::GATEWAY`]) and per API key ([`Limits::GATEWAY_PER_KEY`]).
pub fn gateway<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    limit(
        limit_per_key(router, Limits::GATEWAY_PER_KEY),
        Limits::GATEWAY,
    )
}

/// `router` callable from web pages of any origin (CORS), such as the web app's playground on the
/// node's address calling the gateway on another: its callers prove themselves with a bearer key
/// typed into the page, never a cookie, so another origin gains nothing it was not given.
/// Preflight requests are answered here, before any limit or key check.
pub fn browser_access<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(axum::middleware::from_fn(cors))
}

async fn cors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::{HeaderValue, Method, header};
    if req.method() == Method::OPTIONS {
        return (
            StatusCode::NO_CONTENT,
            [
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
                (
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    "authorization, content-type",
                ),
                (header::ACCESS_CONTROL_MAX_AGE, "600"),
            ],
        )
            .into_response();
    }
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-agora-job-id"),
    );
    response
}

/// `router` with at most `per_key` requests in flight for each API key (the bearer token of
/// `Authorization`), over its routes as they are now: one tenant of a gateway cannot take every
/// place the gateway's total allows. Requests without a key are not counted here (the routes
/// refuse them). Over the limit: 429 at once, with `Retry-After`.
pub fn limit_per_key<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    per_key: usize,
) -> Router<S> {
    let gate = KeyGate {
        keys: Arc::new(Mutex::new(BTreeMap::new())),
        per_key,
    };
    router.layer(axum::middleware::from_fn_with_state(gate, key_guard))
}

#[derive(Clone)]
struct KeyGate {
    /// Requests in flight per key, by the key's hash (so the map holds no secret).
    keys: Arc<Mutex<BTreeMap<[u8; 32], usize>>>,
    per_key: usize,
}

async fn key_guard(State(gate): State<KeyGate>, request: Request, next: Next) -> Response {
    let key = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| agora_types::Hash::digest(k.trim().as_bytes()).0);
    let Some(key) = key else {
        return next.run(request).await;
    };
    let slot = {
        let mut keys = gate.keys.lock();
        let n = keys.get(&key).copied().unwrap_or(0);
        if n >= gate.per_key {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "too many requests in flight with this API key; retry later",
            );
        }
        keys.insert(key, n + 1);
        Slot {
            clients: gate.keys.clone(),
            ip: key,
        }
    };
    let (parts, body) = next.run(request).await.into_parts();
    Response::from_parts(
        parts,
        Body::new(Held {
            body,
            _place: Box::new(slot),
        }),
    )
}

/// The client a proxy forwards for: the last address of `X-Forwarded-For`, else the last `for=`
/// of `Forwarded` (RFC 7239). A header that is present but names no address gives the
/// unspecified address, so the request is still counted as forwarded (and not trusted).
fn forwarded_for(headers: &axum::http::HeaderMap) -> Option<IpAddr> {
    let unspecified = IpAddr::from([0, 0, 0, 0]);
    if let Some(v) = headers.get_all("x-forwarded-for").iter().next_back() {
        let last = v.to_str().ok().and_then(|v| v.rsplit(',').next());
        return Some(last.and_then(parse_node).unwrap_or(unspecified));
    }
    if let Some(v) = headers.get_all(header::FORWARDED).iter().next_back() {
        let last = v
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .and_then(|e| {
                e.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then_some(v)
                })
            });
        return Some(last.and_then(parse_node).unwrap_or(unspecified));
    }
    None
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `"[2001:db8::1]:80"`.
fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    s.strip_prefix('[')?.split(']').next()?.parse().ok()
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// How many connections a server holds open, and for how long one may sit idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open at once, from everyone.
    pub max_open: usize,
    /// Open at once, from one client ([`client_of`]).
    pub per_client: usize,
    /// A connection that moves no byte either way for this long is closed. It must be longer
    /// than any answer may take to send its first byte: the server keeps reading a connection
    /// while it works on its request (to notice a client that leaves).
    pub idle: Duration,
    /// Whether connections from this machine are spared the per-client limit (see
    /// [`Limits::trust_loopback`]).
    pub trust_loopback: bool,
}

impl ConnectionLimits {
    /// A node's API: below a process's usual 1,024 open files, a client's share of them
    /// bounded, and idle connections (a slow client that never finishes its request) closed
    /// after ten minutes, far longer than its 30 s answers or its event streams' keep-alives.
    pub const DEFAULT: ConnectionLimits = ConnectionLimits {
        max_open: 768,
        per_client: 128,
        idle: Duration::from_secs(600),
        trust_loopback: true,
    };
    /// A provider or a gateway: answers may wait on inference (the gateway gives a provider up
    /// to 10 minutes), so idle connections are closed after an hour.
    pub const MARKET: ConnectionLimits = ConnectionLimits {
        idle: Duration::from_secs(3_600),
        ..ConnectionLimits::DEFAULT
    };
}

/// Serves `router` on `listener` until `shutdown` resolves: within [`ConnectionLimits::DEFAULT`]
/// (a connection over a limit is closed as soon as it is accepted), with each request's peer
/// address known to [`limit`]'s per-client limits. A provider or gateway uses
/// [`serve_within`] and [`ConnectionLimits::MARKET`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_within(listener, router, ConnectionLimits::DEFAULT, shutdown).await
}

/// [`serve`] within `limits`.
pub async fn serve_within(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let bounded = Bounded {
        inner: listener,
        open: Arc::new(Semaphore::new(limits.max_open)),
        gate: Gate {
            // Connections are counted by `open`; the gate only keeps each client's share.
            total: Arc::new(Semaphore::new(Semaphore::MAX_PERMITS)),
            clients: Arc::new(Mutex::new(BTreeMap::new())),
            per_client: limits.per_client,
            timeout: None,
            trust_loopback: limits.trust_loopback,
        },
        idle: limits.idle,
    };
    // `tap_io` gives the listener axum's `SocketAddr` connect info.
    axum::serve(
        bounded.tap_io(|_| {}),
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// A TCP listener that closes connections over its limits at once.
struct Bounded {
    inner: tokio::net::TcpListener,
    open: Arc<Semaphore>,
    gate: Gate,
    idle: Duration,
}

impl axum::serve::Listener for Bounded {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            let Ok(permit) = self.open.clone().try_acquire_owned() else {
                tracing::debug!(%addr, "too many connections: closed");
                continue;
            };
            let Some(slot) = self.gate.enter(addr.ip()) else {
                tracing::debug!(%addr, "too many connections from this client: closed");
                continue;
            };
            let idle = self.idle;
            return (
                Counted {
                    stream,
                    idle,
                    deadline: Box::pin(tokio::time::sleep(idle)),
                    _place: (permit, slot),
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// An accepted connection: keeps its place while open, and fails once idle too long.
struct Counted {
    stream: tokio::net::TcpStream,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _place: (OwnedSemaphorePermit, Option<ClientSlot>),
}

impl Counted {
    /// After `poll` on the stream: progress pushes the deadline back; waiting past it fails.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                let next = tokio::time::Instant::now() + self.idle;
                self.deadline.as_mut().reset(next);
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connection idle too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        this.watch(cx, poll)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A response body that keeps its request's place until it is sent (or dropped).
struct Held {
    body: Body,
    _place: Box<dyn Send>,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Serves `/slow`, which answers once it takes a permit from the returned semaphore (none at
    /// first), counting the requests inside it; and `/free`, outside the limits.
    async fn server(limits: Limits) -> (String, Arc<Semaphore>, Arc<AtomicUsize>) {
        let release = Arc::new(Semaphore::new(0));
        let entered = Arc::new(AtomicUsize::new(0));
        let (r, e) = (release.clone(), entered.clone());
        let slow = get(move || {
            let (r, e) = (r.clone(), e.clone());
            async move {
                e.fetch_add(1, Ordering::SeqCst);
                r.acquire().await.unwrap().forget();
                "done"
            }
        });
        let router = limit(Router::new().route("/slow", slow), limits)
            .route("/free", get(|| async { "free" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        (url, release, entered)
    }

    fn spawn_status(url: String) -> tokio::task::JoinHandle<u16> {
        spawn_status_with(url, None)
    }

    /// The status of `GET url`, with `header` (name, value) if any, from a blocking thread.
    fn spawn_status_with(
        url: String,
        header: Option<(&'static str, String)>,
    ) -> tokio::task::JoinHandle<u16> {
        tokio::task::spawn_blocking(move || {
            let mut req = ureq::get(&url);
            if let Some((name, value)) = &header {
                req = req.header(*name, value.as_str());
            }
            match req.call() {
                Ok(r) => r.status().as_u16(),
                Err(ureq::Error::StatusCode(code)) => code,
                Err(e) => panic!("{e}"),
            }
        })
    }

    /// Waits (bounded) until `n` slow requests are inside their handler.
    async fn wait_entered(entered: &AtomicUsize, n: usize) {
        for _ in 0..1_000 {
            if entered.load(Ordering::SeqCst) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} requests never entered");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn requests_over_the_limits_are_refused_at_once_and_places_come_back() {
        let (url, release, entered) = server(Limits {
            max_in_flight: 8,
            per_client: 2,
            timeout: None,
            trust_loopback: false,
        })
        .await;
        // Two slow requests from this address hold its two places: a third is refused with 429.
        let held: Vec<_> = (0..2)
            .map(|_| spawn_status(format!("{url}/slow")))
            .collect();
        wait_entered(&entered, 2).await;
        assert_eq!(spawn_status(format!("{url}/slow")).await.unwrap(), 429);
        // Routes outside the limit still answer.
        assert_eq!(spawn_status(format!("{url}/free")).await.unwrap(), 200);
        // Once answered, the places are free again.
        release.add_permits(2);
        for h in held {
            assert_eq!(h.await.unwrap(), 200);
        }
        release.add_permits(2);
        let again: Vec<_> = (0..2)
            .map(|_| spawn_status(format!("{url}/slow")))
            .collect();
        for h in again {
            assert_eq!(h.await.unwrap(), 200);
        }
    }

    /// Whether the server closes `stream` within `within` (it reads end of file or an error).
    fn closed_within(stream: &mut std::net::TcpStream, within: Duration) -> bool {
        use std::io::Read;
        stream.set_read_timeout(Some(within)).unwrap();
        let mut buf = [0u8; 64];
        match stream.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn connections_over_a_clients_share_are_closed_and_idle_ones_too() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(serve_within(
            listener,
            router,
            ConnectionLimits {
                max_open: 8,
                per_client: 1,
                idle: Duration::from_millis(700),
                trust_loopback: false,
            },
            std::future::pending(),
        ));
        let verdict = tokio::task::spawn_blocking(move || {
            // The first connection is this client's one; a second is closed at once.
            let mut first = std::net::TcpStream::connect(addr).unwrap();
            let mut second = std::net::TcpStream::connect(addr).unwrap();
            let second_closed = closed_within(&mut second, Duration::from_millis(500));
            // The first, silent, is closed once idle too long.
            let first_open_meanwhile = !closed_within(&mut first, Duration::from_millis(100));
            let first_closed = closed_within(&mut first, Duration::from_secs(5));
            // Its place is back: a request is served again.
            let mut served = false;
            for _ in 0..50 {
                if ureq::get(&format!("http://{addr}/")).call().is_ok() {
                    served = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (second_closed, first_open_meanwhile, first_closed, served)
        })
        .await
        .unwrap();
        assert_eq!(verdict, (true, true, true, true));
    }

    #[test]
    fn an_ipv6_host_is_one_client_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_of(a), client_of(b));
        assert_ne!(client_of(a), client_of(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_of(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        // Loopback is loopback in either family, before any grouping.
        let gate = Gate {
            total: Arc::new(Semaphore::new(1)),
            clients: Arc::new(Mutex::new(BTreeMap::new())),
            per_client: 0,
            timeout: None,
            trust_loopback: true,
        };
        for local in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(
                matches!(gate.enter(local.parse().unwrap()), Some(None)),
                "{local}"
            );
        }
        assert!(gate.enter("192.0.2.7".parse().unwrap()).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_request_over_its_time_is_answered_408_and_frees_its_place() {
        let (url, release, entered) = server(Limits {
            max_in_flight: 1,
            per_client: 1,
            timeout: Some(Duration::from_millis(200)),
            trust_loopback: false,
        })
        .await;
        assert_eq!(spawn_status(format!("{url}/slow")).await.unwrap(), 408);
        assert_eq!(entered.load(Ordering::SeqCst), 1);
        release.add_permits(1);
        assert_eq!(spawn_status(format!("{url}/slow")).await.unwrap(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn local_services_are_spared_the_per_client_limit_not_the_total() {
        let (url, release, entered) = server(Limits {
            max_in_flight: 3,
            per_client: 1,
            timeout: None,
            trust_loopback: true,
        })
        .await;
        let held: Vec<_> = (0..3)
            .map(|_| spawn_status(format!("{url}/slow")))
            .collect();
        wait_entered(&entered, 3).await;
        assert_eq!(spawn_status(format!("{url}/slow")).await.unwrap(), 503);
        release.add_permits(3);
        for h in held {
            assert_eq!(h.await.unwrap(), 200);
        }
    }

    #[test]
    fn a_proxy_is_believed_for_the_client_it_saw_last() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(forwarded_for(&h), None);
        h.insert("x-forwarded-for", "10.0.0.1, 203.0.113.7".parse().unwrap());
        assert_eq!(forwarded_for(&h), Some("203.0.113.7".parse().unwrap()));
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(forwarded_for(&h), Some("0.0.0.0".parse().unwrap()));
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::FORWARDED,
            "for=192.0.2.1, for=\"[2001:db8::7]:4711\";proto=https"
                .parse()
                .unwrap(),
        );
        assert_eq!(forwarded_for(&h), Some("2001:db8::7".parse().unwrap()));
        assert_eq!(parse_node("198.51.100.2:80"), "198.51.100.2".parse().ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_local_proxys_clients_are_counted_one_by_one() {
        let (url, release, entered) = server(Limits {
            max_in_flight: 8,
            per_client: 1,
            timeout: None,
            trust_loopback: true,
        })
        .await;
        let via_proxy = |client: &'static str| {
            spawn_status_with(
                format!("{url}/slow"),
                Some(("X-Forwarded-For", client.to_string())),
            )
        };
        // One stranger's request through the proxy holds its one place; its second is refused,
        // another stranger's is not, and the proxy's own (no header) stays trusted.
        let first = via_proxy("203.0.113.7");
        wait_entered(&entered, 1).await;
        assert_eq!(via_proxy("10.9.9.9, 203.0.113.7").await.unwrap(), 429);
        let other = via_proxy("198.51.100.2");
        let local: Vec<_> = (0..2)
            .map(|_| spawn_status(format!("{url}/slow")))
            .collect();
        wait_entered(&entered, 4).await;
        release.add_permits(4);
        assert_eq!(first.await.unwrap(), 200);
        assert_eq!(other.await.unwrap(), 200);
        for l in local {
            assert_eq!(l.await.unwrap(), 200);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn each_api_key_has_its_share_of_places() {
        let release = Arc::new(Semaphore::new(0));
        let entered = Arc::new(AtomicUsize::new(0));
        let (r, e) = (release.clone(), entered.clone());
        let slow = get(move || {
            let (r, e) = (r.clone(), e.clone());
            async move {
                e.fetch_add(1, Ordering::SeqCst);
                r.acquire().await.unwrap().forget();
                "done"
            }
        });
        let router = limit_per_key(Router::new().route("/slow", slow), 2);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/slow", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        let call = |key: Option<&'static str>| {
            spawn_status_with(
                url.clone(),
                key.map(|k| ("Authorization", format!("Bearer {k}"))),
            )
        };
        let held: Vec<_> = (0..2).map(|_| call(Some("alice"))).collect();
        wait_entered(&entered, 2).await;
        assert_eq!(call(Some("alice")).await.unwrap(), 429);
        // Another key, and no key, are not held back by alice's.
        let others = [call(Some("bob")), call(None)];
        wait_entered(&entered, 4).await;
        release.add_permits(4);
        for h in held.into_iter().chain(others) {
            assert_eq!(h.await.unwrap(), 200);
        }
        // Alice's places came back.
        let again = call(Some("alice"));
        wait_entered(&entered, 5).await;
        release.add_permits(1);
        assert_eq!(again.await.unwrap(), 200);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_total_limit_answers_503() {
        let (url, release, entered) = server(Limits {
            max_in_flight: 1,
            per_client: 8,
            timeout: None,
            trust_loopback: false,
        })
        .await;
        let held = spawn_status(format!("{url}/slow"));
        wait_entered(&entered, 1).await;
        assert_eq!(spawn_status(format!("{url}/slow")).await.unwrap(), 503);
        release.add_permits(1);
        assert_eq!(held.await.unwrap(), 200);
    }
}
