//! `POST /v1/sql`, `GET /v1/sql/tables` and `GET /v1/anomalies`: the analytics service over
//! HTTP, beside the node's API.
//!
//! A request is `{"sql": "SELECT …", "format": "json", "max_rows": n, "timeout_ms": n,
//! "memory_mb": n}` (all but `sql` optional; the limits are clamped to
//! [`QueryLimits::MAX`]). The answer is the result in the format asked, with the headers
//! `x-agora-height` (the last block the tables held), `x-agora-rows` and `x-agora-elapsed-ms`;
//! or an error `{"code", "message"}`. A client that disconnects cancels its query.

use crate::format::Format;
use crate::tables::TableDef;
use crate::{Analytics, Error, MAX_SQL_BYTES, QueryLimits};
use agora_api::ApiError;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A query over HTTP.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One read-only statement.
    pub sql: String,
    /// `json` (the default), `csv`, `arrow`, `parquet` or `table`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Most rows (default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
    /// Time limit in milliseconds (default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Memory limit in MiB (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<usize>,
}

impl SqlRequest {
    /// The limits it asks for, over the defaults.
    pub fn limits(&self) -> QueryLimits {
        let d = QueryLimits::default();
        QueryLimits {
            timeout: self.timeout_ms.map_or(d.timeout, Duration::from_millis),
            max_rows: self.max_rows.unwrap_or(d.max_rows),
            memory_bytes: self
                .memory_mb
                .map_or(d.memory_bytes, |m| m.saturating_mul(1 << 20)),
        }
        .clamped()
    }
}

/// The routes, to merge beside the node's API.
pub fn router(analytics: Analytics) -> Router {
    Router::new()
        .route(
            "/v1/sql",
            post(sql).layer(DefaultBodyLimit::max(MAX_SQL_BYTES + 4096)),
        )
        .route("/v1/sql/tables", get(tables))
        .route("/v1/anomalies", get(anomalies))
        .with_state(analytics)
}

/// `GET /v1/anomalies?kind=all|wash|sybil|drift&from=H&to=H` (by default the last
/// [`ANOMALY_BLOCKS`] blocks).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnomalyQuery {
    kind: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
}

/// Most rows the anomaly detectors read in one request.
const ANOMALY_ROWS: usize = 200_000;
/// Blocks the detectors look back over unless `from` says otherwise.
const ANOMALY_BLOCKS: u64 = 10_000;
/// One search at a time: the detectors are bounded but not free.
static ANOMALY_SLOT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The rows of `sql` as JSON objects (at most [`ANOMALY_ROWS`]), parsed off the async threads.
async fn object_rows(analytics: &Analytics, sql: &str) -> Result<Vec<serde_json::Value>, Error> {
    let limits = QueryLimits {
        max_rows: ANOMALY_ROWS,
        ..QueryLimits::default()
    };
    let (_, bytes) = analytics.query_as(sql, limits, Format::Json).await?;
    tokio::task::spawn_blocking(move || {
        let mut v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("reading rows: {e}")))?;
        match v.get_mut("rows").map(serde_json::Value::take) {
            Some(serde_json::Value::Array(rows)) => Ok(rows),
            _ => Err(Error::Internal("the rows are missing".into())),
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("reading rows: {e}")))?
}

/// Wash-trading cycles, sybil clusters and drifting providers over the node's tables, with
/// the detectors' default thresholds (those of `agora anomalies`), each with its evidence.
async fn anomalies(
    State(analytics): State<Analytics>,
    query: Result<axum::extract::Query<AnomalyQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::anomaly::{self, DriftOptions, JobOutcome, SybilOptions, Transfer, WashOptions};
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::bad_request("malformed_request", e.body_text()))?;
    let kinds: &[&str] = match q.kind.as_deref().unwrap_or("all") {
        "all" => &["wash", "sybil", "drift"],
        "wash" => &["wash"],
        "sybil" => &["sybil"],
        "drift" => &["drift"],
        other => {
            return Err(ApiError::bad_request(
                "unknown_kind",
                format!("kind {other:?}: all, wash, sybil or drift"),
            ));
        }
    };
    let _slot = ANOMALY_SLOT.try_acquire().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "a search for anomalies is already running: try again shortly",
        )
    })?;
    let height = analytics.height();
    let to = q.to.unwrap_or(i64::MAX as u64);
    let from = q.from.unwrap_or_else(|| {
        height
            .unwrap_or(0)
            .min(to)
            .saturating_sub(ANOMALY_BLOCKS - 1)
    });
    if from > to {
        return Err(ApiError::bad_request(
            "bad_range",
            format!("from {from} is past to {to}"),
        ));
    }
    let range = |sql: &str| {
        sql.replace("{from}", &from.min(i64::MAX as u64).to_string())
            .replace("{to}", &to.min(i64::MAX as u64).to_string())
    };
    let bad_rows = |e: Error| api_error(&e);
    let transfers = if kinds.contains(&"wash") || kinds.contains(&"sybil") {
        object_rows(&analytics, &range(anomaly::TRANSFERS_SQL))
            .await
            .map_err(|e| api_error(&e))?
            .iter()
            .map(Transfer::from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad_rows)?
    } else {
        Vec::new()
    };
    let jobs = if kinds.contains(&"drift") {
        object_rows(&analytics, &range(anomaly::JOBS_SQL))
            .await
            .map_err(|e| api_error(&e))?
            .iter()
            .map(JobOutcome::from_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad_rows)?
    } else {
        Vec::new()
    };
    let kinds: Vec<&'static str> = kinds.to_vec();
    // The searches are bounded but may take a moment: off the async threads.
    let findings = tokio::task::spawn_blocking(move || {
        let mut findings = Vec::new();
        if kinds.contains(&"wash") {
            findings.extend(anomaly::wash_trading(&transfers, WashOptions::default()));
        }
        if kinds.contains(&"sybil") {
            findings.extend(anomaly::sybil_clusters(&transfers, SybilOptions::default()));
        }
        if kinds.contains(&"drift") {
            findings.extend(anomaly::provider_drift(&jobs, DriftOptions::default()));
        }
        findings
    })
    .await
    .map_err(|e| api_error(&Error::Internal(format!("the detectors failed: {e}"))))?;
    Ok(Json(serde_json::json!({
        "height": height,
        "findings": findings,
    })))
}

/// The API error for an analytics error.
pub fn api_error(e: &Error) -> ApiError {
    let status = match e {
        Error::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Error::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
        Error::RowCap { .. } | Error::MemoryCap(_) => StatusCode::UNPROCESSABLE_ENTITY,
        e if e.is_client_error() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::new(status, e.code(), e.to_string())
}

async fn sql(
    State(analytics): State<Analytics>,
    body: Result<Json<SqlRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                e.status(),
                "request_too_large",
                format!("send at most {MAX_SQL_BYTES} bytes of SQL"),
            );
        }
        ApiError::new(
            e.status(),
            "malformed_request",
            format!(
                "expected {{\"sql\": \"SELECT …\", \"format\": \"json\"}}: {}",
                e.body_text()
            ),
        )
    })?;
    let format: Format = request
        .format
        .as_deref()
        .unwrap_or("json")
        .parse()
        .map_err(|e: String| ApiError::bad_request("unknown_format", e))?;
    let (out, bytes) = analytics
        .query_as(&request.sql, request.limits(), format)
        .await
        .map_err(|e| api_error(&e))?;
    let mut response = (StatusCode::OK, bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Some(h) = out.height {
        headers.insert("x-agora-height", HeaderValue::from(h));
    }
    headers.insert("x-agora-rows", HeaderValue::from(out.rows as u64));
    headers.insert(
        "x-agora-elapsed-ms",
        HeaderValue::from(u64::try_from(out.elapsed.as_millis()).unwrap_or(u64::MAX)),
    );
    Ok(response)
}

/// A table in `GET /v1/sql/tables`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TableInfo {
    /// Its name.
    pub name: String,
    /// What a row is.
    pub doc: String,
    /// `history` (grows with blocks) or `state` (at the latest height).
    pub kind: String,
    /// Its columns.
    pub columns: Vec<ColumnInfo>,
}

/// A column in [`TableInfo`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it may be null.
    pub nullable: bool,
    /// What it holds.
    pub doc: String,
}

fn info(def: &TableDef) -> TableInfo {
    let history = crate::tables::HISTORY.iter().any(|t| t.name == def.name);
    TableInfo {
        name: def.name.into(),
        doc: def.doc.into(),
        kind: if history { "history" } else { "state" }.into(),
        columns: def
            .columns
            .iter()
            .map(|c| ColumnInfo {
                name: c.name.into(),
                kind: c.kind.name().into(),
                nullable: c.nullable,
                doc: c.doc.into(),
            })
            .collect(),
    }
}

/// Every table, for the API and the web app's editor.
pub fn table_infos() -> Vec<TableInfo> {
    crate::catalog().into_iter().map(info).collect()
}

async fn tables(State(analytics): State<Analytics>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "height": analytics.height(),
        "tables": table_infos(),
    }))
}
