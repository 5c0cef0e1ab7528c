//! Templates (embedded, compiled once), the shared page context, assets, and errors as pages.

use crate::{NAV, Web};
use agora_api::ApiError;
use axum::{
    extract::Path,
    http::{StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use minijinja::{Environment, Value, context, value::Serde};
use std::sync::OnceLock;

/// Every template, by name, compiled into the binary.
const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../templates/layout.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("home.html", include_str!("../templates/home.html")),
    ("search.html", include_str!("../templates/search.html")),
    ("block.html", include_str!("../templates/block.html")),
    ("tx.html", include_str!("../templates/tx.html")),
    ("account.html", include_str!("../templates/account.html")),
    (
        "providers.html",
        include_str!("../templates/providers.html"),
    ),
    ("provider.html", include_str!("../templates/provider.html")),
    ("models.html", include_str!("../templates/models.html")),
    ("job.html", include_str!("../templates/job.html")),
    (
        "verifiers.html",
        include_str!("../templates/verifiers.html"),
    ),
    (
        "playground.html",
        include_str!("../templates/playground.html"),
    ),
    ("gateway.html", include_str!("../templates/gateway.html")),
    ("audit.html", include_str!("../templates/audit.html")),
    ("verifier.html", include_str!("../templates/verifier.html")),
    ("subnets.html", include_str!("../templates/subnets.html")),
    ("data.html", include_str!("../templates/data.html")),
    ("bounty.html", include_str!("../templates/bounty.html")),
    ("dataset.html", include_str!("../templates/dataset.html")),
    ("subnet.html", include_str!("../templates/subnet.html")),
    ("sql.html", include_str!("../templates/sql.html")),
    ("zk.html", include_str!("../templates/zk.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // A misspelt field is an error (the page tests catch it), not an empty cell; `if` may
        // still test a field that is absent.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        // `.html` templates escape every value unless marked safe.
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not parse: {e:#}"));
        }
        env.add_filter("agr", agr);
        env.add_filter("short", short);
        env.add_filter("time", time);
        env
    })
}

/// Base units (a number or a decimal string) as AGR.
fn agr(v: Value) -> String {
    let units: Option<u128> = match v.as_str() {
        Some(s) => s.parse().ok(),
        None => u128::try_from(v).ok(),
    };
    match units {
        // "1.5AGR" as "1.5 AGR": easier to read in a page.
        Some(u) => agora_types::format_amount(u).replace("AGR", " AGR"),
        None => "?".into(),
    }
}

/// A long hash or address cut to its first characters.
fn short(v: String) -> String {
    if v.chars().count() > 18 {
        format!("{}…", v.chars().take(16).collect::<String>())
    } else {
        v
    }
}

/// Milliseconds since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn utc_time(ms: u64) -> String {
    time(ms)
}

fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// A page that could not be shown: rendered as a page with the reason, never a blank one.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    title: String,
    message: String,
}

impl PageError {
    pub(crate) fn new(status: StatusCode, title: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            title: title.into(),
            message: message.into(),
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", message)
    }
}

impl PageError {
    /// The same refusal for a JSON route.
    pub(crate) fn into_api(self) -> ApiError {
        ApiError::new(self.status, "unavailable", self.message)
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        let title = match e.status {
            StatusCode::NOT_FOUND => "Not found",
            s if s.is_client_error() => "Not understood",
            _ => "The node could not answer",
        };
        Self::new(e.status, title, e.message)
    }
}

impl From<agora_chain::Error> for PageError {
    fn from(e: agora_chain::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<agora_store::Error> for PageError {
    fn from(e: agora_store::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let ctx = context! {
            title => self.title.clone(),
            message => self.message.clone(),
            status => self.status.as_u16(),
            section => "",
            nav => v(&NAV),
        };
        let body = env()
            .get_template("error.html")
            .and_then(|t| t.render(ctx))
            // The error page itself failed: still say what happened, in plain text.
            .unwrap_or_else(|e| format!("{}: {} ({e})", self.title, self.message));
        (self.status, Html(body)).into_response()
    }
}

pub(crate) type PageResult = Result<Response, PageError>;

/// Runs a page's reads and rendering on a thread for blocking work, off the async threads the
/// node's API and consensus share: a page reads the store, and a chain's blocks can be large.
pub(crate) async fn blocking(f: impl FnOnce() -> PageResult + Send + 'static) -> PageResult {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "This page failed",
            format!("the page could not be built: {e}"),
        ))
    })
}

/// Any serializable value, for a template (as the JSON API would show it).
pub(crate) fn v<T: serde::Serialize>(value: &T) -> Value {
    Value::from(Serde(value))
}

/// Renders `template` with the shared context (navigation, chain id, head) and `ctx`.
pub(crate) fn page(
    web: &Web,
    template: &str,
    section: &str,
    title: &str,
    ctx: Value,
) -> PageResult {
    let snap = web.node.snapshot()?;
    let height = snap.height()?.unwrap_or(0);
    let full = context! {
        nav => v(&NAV),
        section => section,
        title => title,
        chain_id => web.node.chain_id(),
        height => height,
        ..ctx
    };
    let html = env()
        .get_template(template)
        .and_then(|t| t.render(full))
        .map_err(|e| {
            tracing::error!(template, error = %format!("{e:#}"), "a page failed to render");
            PageError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This page failed",
                format!("the page could not be rendered: {e}"),
            )
        })?;
    Ok(Html(html).into_response())
}

const APP_CSS: &str = include_str!("../assets/app.css");
const APP_JS: &str = include_str!("../assets/app.js");

/// The stylesheet and script, embedded; cached by the browser for an hour.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        _ => return PageError::not_found(format!("no asset {name:?}")).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_amounts_read_as_people_write_them() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        // 2026-12-04 13:40:40 UTC.
        assert_eq!(time(1_796_391_640_000), "2026-12-04 13:40:40");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(agr(Value::from("1500000000")), "1.5 AGR");
        assert_eq!(agr(Value::from(2_000_000_000u64)), "2 AGR");
        assert_eq!(agr(Value::from("x")), "?");
        assert_eq!(short("a".repeat(40)), format!("{}…", "a".repeat(16)));
    }

    #[test]
    fn every_template_is_embedded_and_parses() {
        for (name, _) in TEMPLATES {
            env().get_template(name).expect("registered");
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        for file in std::fs::read_dir(dir).expect("the templates folder") {
            let name = file.expect("an entry").file_name();
            let name = name.to_str().expect("a UTF-8 name");
            assert!(
                TEMPLATES.iter().any(|(n, _)| *n == name),
                "templates/{name} is not in TEMPLATES"
            );
        }
    }
}
