//! What every HTTP server of Agora (a node's API, a provider, the gateway) lets strangers take:
//! at most `max_in_flight` requests at once, and at most `per_client` of them from one IP
//! address. A request over either limit is answered at once (503 or 429, with `Retry-After`),
//! never queued, so a flood costs the server a refusal per request, not memory or time. A
//! request holds its place until its answer's body has been sent: a streamed answer or an event
//! stream counts for as long as it runs.
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
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many requests a server serves at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// In flight, from everyone.
    pub max_in_flight: usize,
    /// In flight, from one IP address.
    pub per_client: usize,
}

impl Limits {
    /// A node's API: cheap reads and submissions, event streams.
    pub const NODE_API: Limits = Limits {
        max_in_flight: 1024,
        per_client: 64,
    };
    /// A provider: each request is an inference job (its own queue bounds the work); a gateway
    /// is one address that brings many users' jobs.
    pub const PROVIDER: Limits = Limits {
        max_in_flight: 256,
        per_client: 128,
    };
    /// The gateway: each request waits on a provider.
    pub const GATEWAY: Limits = Limits {
        max_in_flight: 512,
        per_client: 64,
    };
}

/// `router` with `limits` applied to every route it has.
pub fn limit(router: Router, limits: Limits) -> Router {
    let gate = Gate {
        total: Arc::new(Semaphore::new(limits.max_in_flight)),
        clients: Arc::new(Mutex::new(BTreeMap::new())),
        per_client: limits.per_client,
    };
    router.layer(axum::middleware::from_fn_with_state(gate, guard))
}

#[derive(Clone)]
struct Gate {
    total: Arc<Semaphore>,
    /// Requests in flight per address; an address leaves the map when it has none, so the map
    /// never holds more entries than requests in flight.
    clients: Arc<Mutex<BTreeMap<IpAddr, usize>>>,
    per_client: usize,
}

/// One request's place from one address.
struct ClientSlot {
    clients: Arc<Mutex<BTreeMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
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
    fn enter(&self, ip: IpAddr) -> Option<ClientSlot> {
        let mut clients = self.clients.lock();
        let n = clients.entry(ip).or_insert(0);
        if *n >= self.per_client {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clients.clone(),
            ip,
        })
    }
}

async fn guard(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let slot = match client {
        Some(ip) => match gate.enter(ip) {
            Some(slot) => Some(slot),
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
    let (parts, body) = next.run(request).await.into_parts();
    Response::from_parts(
        parts,
        Body::new(Held {
            body,
            _place: (permit, slot),
        }),
    )
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

/// A response body that keeps its request's place until it is sent (or dropped).
struct Held {
    body: Body,
    _place: (OwnedSemaphorePermit, Option<ClientSlot>),
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
        tokio::task::spawn_blocking(move || match ureq::get(&url).call() {
            Ok(r) => r.status().as_u16(),
            Err(ureq::Error::StatusCode(code)) => code,
            Err(e) => panic!("{e}"),
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_total_limit_answers_503() {
        let (url, release, entered) = server(Limits {
            max_in_flight: 1,
            per_client: 8,
        })
        .await;
        let held = spawn_status(format!("{url}/slow"));
        wait_entered(&entered, 1).await;
        assert_eq!(spawn_status(format!("{url}/slow")).await.unwrap(), 503);
        release.add_permits(1);
        assert_eq!(held.await.unwrap(), 200);
    }
}
