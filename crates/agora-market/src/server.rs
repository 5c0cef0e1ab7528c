//! The provider's HTTP endpoint: `GET /v1/provider` (who it is, what it serves, its prices) and
//! `POST /v1/jobs` (a [`JobSubmission`]; a [`Delivery`] back, or server-sent events: `piece` for
//! each sealed piece of output as it is generated, then `done` with the delivery).

use crate::{Delivery, Error, JobSubmission, Provider, SealedPiece};
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use serde_json::json;
use std::convert::Infallible;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Largest job submission accepted, in bytes (the sealed input is hex: twice the input limit).
const MAX_BODY: usize = 2 * crate::MAX_INPUT_BYTES + 16 * 1024;

/// The status and code that answer `e`.
fn status_and_code(e: &Error) -> (u16, &'static str) {
    match e {
        Error::Refused { status, code, .. } => (*status, *code),
        Error::Node(_) => (503, "chain_unavailable"),
        Error::BadInput(_) => (400, "bad_input"),
        Error::UnknownModel(_) => (404, "unknown_model"),
        Error::Infer(agora_infer::Error::Busy(_)) => (503, "busy"),
        _ => (500, "internal"),
    }
}

/// An error as JSON `{code, message}` with its status.
fn error_response(e: &Error) -> Response {
    let (status, code) = status_and_code(e);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(json!({ "code": code, "message": public_message(e) })),
    )
        .into_response()
}

/// What a caller is told of `e`: the reason of a refusal or of bad input in full; for failures
/// inside the provider (its chain connection, its disk, its runtime), a plain message, the
/// details going to the log.
fn public_message(e: &Error) -> String {
    match e {
        Error::Refused { .. }
        | Error::BadInput(_)
        | Error::UnknownModel(_)
        | Error::Infer(agora_infer::Error::Busy(_)) => e.to_string(),
        Error::Node(_) => {
            tracing::warn!("{e}");
            "the provider cannot reach its chain now; try again".into()
        }
        _ => {
            tracing::warn!("{e}");
            "the provider failed to serve the job".into()
        }
    }
}

/// The provider's routes.
pub fn provider_router(provider: Arc<Provider>) -> Router {
    Router::new()
        .route("/v1/provider", get(describe))
        .route(
            "/v1/jobs",
            post(job).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY)),
        )
        .with_state(provider)
}

async fn describe(State(p): State<Arc<Provider>>) -> Json<serde_json::Value> {
    Json(json!({
        "address": p.address(),
        "info": p.info(),
        "unsettled": p.unsettled(),
    }))
}

enum Step {
    Piece(SealedPiece),
    Done(Delivery),
    Failed(Error),
}

async fn job(State(p): State<Arc<Provider>>, Json(submission): Json<JobSubmission>) -> Response {
    // Admission first, so a refusal is a plain HTTP error before any output (a gateway can then
    // try another provider).
    let admitted = {
        let p = p.clone();
        let s = submission.clone();
        match tokio::task::spawn_blocking(move || p.admit(&s)).await {
            Ok(Ok(admitted)) => admitted,
            Ok(Err(e)) => return error_response(&e),
            Err(e) => return error_response(&Error::BadInput(format!("admission failed: {e}"))),
        }
    };
    let (tx, rx) = mpsc::channel::<Step>(64);
    tokio::task::spawn_blocking(move || {
        let result = p.execute(admitted, &mut |piece| {
            if submission.stream {
                // A closed connection stops the generation.
                match tx.blocking_send(Step::Piece(piece)) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(_) => ControlFlow::Break(()),
                }
            } else {
                ControlFlow::Continue(())
            }
        });
        let _ = tx.blocking_send(match result {
            Ok(delivery) => Step::Done(delivery),
            Err(e) => Step::Failed(e),
        });
    });
    if !submission.stream {
        let mut rx = rx;
        while let Some(step) = rx.recv().await {
            match step {
                Step::Done(delivery) => return Json(delivery).into_response(),
                Step::Failed(e) => return error_response(&e),
                Step::Piece(_) => {}
            }
        }
        return error_response(&Error::BadInput("the job ended without output".into()));
    }
    let events = futures_util::StreamExt::map(ReceiverStream::new(rx), |step| {
        let event = match step {
            Step::Piece(piece) => Event::default().event("piece").json_data(piece),
            Step::Done(delivery) => Event::default().event("done").json_data(delivery),
            // With the status and code an unstreamed answer would have had: the gateway must
            // tell a request the provider refused after working on it (too large to verify)
            // from a provider that failed.
            Step::Failed(e) => {
                let (status, code) = status_and_code(&e);
                Event::default().event("error").json_data(
                    json!({"status": status, "code": code, "message": public_message(&e)}),
                )
            }
        };
        Ok::<_, Infallible>(event.unwrap_or_else(|_| Event::default().event("error")))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

/// Settles waiting receipts and reveals jobs drawn for checking every `interval` until `shutdown`
/// turns true, then settles once more.
pub async fn settle_loop(
    provider: Arc<Provider>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stop = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = shutdown.changed() => true,
        };
        while provider.unsettled() > 0 {
            let p = provider.clone();
            match tokio::task::spawn_blocking(move || p.settle()).await {
                Ok(Ok(Some((hash, n)))) => tracing::info!("settling {n} jobs in {hash}"),
                Ok(Ok(None)) => break,
                Ok(Err(e)) => {
                    tracing::warn!("settlement failed, will retry: {e}");
                    break;
                }
                Err(e) => {
                    tracing::warn!("settlement task failed: {e}");
                    break;
                }
            }
        }
        if stop || *shutdown.borrow() {
            return;
        }
        // Jobs drawn for checking: reveal them to their verifiers.
        let p = provider.clone();
        match tokio::task::spawn_blocking(move || p.reveal_pending()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!("revealing checked jobs failed, will retry: {e}"),
            Err(e) => tracing::warn!("reveal task failed: {e}"),
        }
    }
}
