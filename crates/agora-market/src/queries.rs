//! `POST /v1/sql` and `POST /v1/forecasts` on the gateway: a read-only SQL query, or a forecast
//! of the series one gives, over the chain's history as it stood at a stated height, run as a
//! paid, receipted job by a provider of the analytics model and re-run by a sampled verifier
//! (DESIGN.md §10).
//!
//! ```text
//! POST /v1/sql        {"sql": "SELECT …", "height": 120 (default: the chain's height now),
//!                      "max_rows_read": 10000000, "verification": "sampled", "model": "…"}
//! POST /v1/forecasts  {"sql": "SELECT t, v …", "horizon": 12, "season": 24, "level": 0.95,
//!                      "windows": 4, …the same…}
//! ```
//! A job is billed for the rows it reads (its input tokens: every row at or below the height
//! of each table it scans) and the rows or steps it gives (its output tokens); `max_rows_read`
//! caps the first, and so the fee.

// Handlers answer errors as ready responses, as axum handlers do.
#![allow(clippy::result_large_err)]

use crate::openai::{client, from_error, internal, oai_error, receipt_json, with_job_header};
use crate::{Completed, JobInput, JobOutput, OpenAiState};
use agora_types::{JobParams, Verification};
use axum::{Json, extract::State, http::HeaderMap, response::IntoResponse, response::Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::ops::ControlFlow;

/// The analytics model's name (the registry's entry that the analytics service serves).
pub const ANALYTICS_MODEL: &str = "agora-analytics@1";
/// Rows a job may read unless the request says otherwise.
pub const DEFAULT_MAX_ROWS_READ: u32 = 10_000_000;
/// A forecast job's limits, checked here before any provider is asked (the analytics engine's
/// own; a test in agora-daemons holds the two equal).
pub const MAX_HORIZON: u32 = 10_000;
/// Longest season, in steps.
pub const MAX_SEASON: u32 = 1_000;
/// Most backtest windows.
pub const MAX_WINDOWS: u32 = 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    height: Option<u64>,
    model: Option<String>,
    max_rows_read: Option<u32>,
    verification: Option<Verification>,
    // Forecasts only.
    horizon: Option<u32>,
    season: Option<u32>,
    level: Option<f64>,
    windows: Option<u32>,
}

pub(crate) async fn sql(
    State(st): State<OpenAiState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    answer(st, headers, body, false).await
}

pub(crate) async fn forecast(
    State(st): State<OpenAiState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    answer(st, headers, body, true).await
}

async fn answer(st: OpenAiState, headers: HeaderMap, body: Value, forecast: bool) -> Response {
    let key = match client(&st, &headers) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let req: QueryRequest = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => return oai_error(400, "invalid_request", e.to_string()),
    };
    if req.sql.trim().is_empty() {
        return oai_error(400, "invalid_input", "`sql` is empty");
    }
    if !forecast
        && (req.horizon.is_some()
            || req.season.is_some()
            || req.level.is_some()
            || req.windows.is_some())
    {
        return oai_error(
            400,
            "invalid_request",
            "horizon, season, level and windows are a forecast's: POST /v1/forecasts",
        );
    }
    let level_milli = match req.level {
        None => 950,
        Some(l) if (0.001..=0.999).contains(&l) => (l * 1000.0).round() as u32,
        Some(l) => {
            return oai_error(
                400,
                "invalid_level",
                format!("level {l}: between 0.001 and 0.999"),
            );
        }
    };
    if req.horizon.is_some_and(|h| !(1..=MAX_HORIZON).contains(&h)) {
        return oai_error(
            400,
            "invalid_horizon",
            format!("the horizon is 1 to {MAX_HORIZON} steps"),
        );
    }
    if req.season.is_some_and(|s| !(2..=MAX_SEASON).contains(&s)) {
        return oai_error(
            400,
            "invalid_season",
            format!("a season is 2 to {MAX_SEASON} steps"),
        );
    }
    if req.windows.is_some_and(|w| w > MAX_WINDOWS) {
        return oai_error(
            400,
            "invalid_windows",
            format!("at most {MAX_WINDOWS} backtest windows"),
        );
    }
    let max_rows_read = req.max_rows_read.unwrap_or(DEFAULT_MAX_ROWS_READ);
    if max_rows_read == 0 {
        return oai_error(400, "invalid_request", "max_rows_read must be at least 1");
    }
    let params = JobParams {
        max_tokens: max_rows_read,
        verification: req.verification.unwrap_or_default(),
        ..JobParams::default()
    };
    let name = req.model.unwrap_or_else(|| ANALYTICS_MODEL.to_string());
    let gw = st.gateway.clone();
    let (sql, height) = (req.sql, req.height);
    let (horizon, season, windows) = (req.horizon.unwrap_or(12), req.season, req.windows);
    let result = tokio::task::spawn_blocking(move || -> Result<(u64, Completed), Response> {
        let model = gw.resolve_model(&name).map_err(|e| from_error(&e))?;
        let tip = gw
            .chain()
            .height()
            .map_err(|e| from_error(&crate::Error::from(e)))?;
        let height = match height {
            Some(h) if h > tip => {
                // Not the providers' fault: refused here, before any of them is asked.
                return Err(oai_error(
                    400,
                    "height_not_committed",
                    format!("height {h} is not committed yet (the chain is at {tip})"),
                ));
            }
            Some(h) => h,
            None => tip,
        };
        let input = if forecast {
            JobInput::Forecast {
                sql,
                height,
                horizon,
                season,
                level_milli,
                windows: windows.unwrap_or(4),
            }
        } else {
            JobInput::Sql { sql, height }
        };
        let done = gw
            .run(&key, model, &input, params, &mut |_| {
                ControlFlow::Continue(())
            })
            .map_err(|e| from_error(&e))?;
        Ok((height, done))
    })
    .await;
    let (height, done) = match result {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return e,
        Err(e) => return internal(&e),
    };
    let usage = json!({
        "rows_read": done.receipt.receipt.input_tokens,
        "output": done.receipt.receipt.output_tokens,
    });
    let out = match (&done.output, forecast) {
        (JobOutput::Table { columns, rows }, false) => json!({
            "object": "sql.result",
            "height": height,
            "columns": columns,
            "rows": rows,
            "usage": usage,
            "agora": receipt_json(&done),
        }),
        (JobOutput::Forecast { forecast }, true) => json!({
            "object": "forecast",
            "height": height,
            "forecast": forecast,
            "usage": usage,
            "agora": receipt_json(&done),
        }),
        _ => {
            return oai_error(
                400,
                "wrong_model_kind",
                "that model does not answer queries or forecasts",
            );
        }
    };
    with_job_header(Json(out).into_response(), &done)
}
