//! `POST /v1/sql` and `GET /v1/sql/tables`: the analytics service over HTTP, beside the
//! node's API.
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
        .with_state(analytics)
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
