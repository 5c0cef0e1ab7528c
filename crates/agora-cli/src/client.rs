//! A small blocking client for the node's HTTP API.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::time::Duration;

/// The node's API at `base`.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn check(
        &self,
        path: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let mut resp = result.with_context(|| {
            format!(
                "cannot reach the node at {} (is it running? set --node or AGORA_NODE)",
                self.base
            )
        })?;
        let status = resp.status().as_u16();
        let body: Value = resp.body_mut().read_json().with_context(|| {
            format!("{path}: the node answered {status} with a body that is not JSON")
        })?;
        if status >= 400 {
            let code = body["code"].as_str().unwrap_or("error");
            let message = body["message"].as_str().unwrap_or("");
            bail!("{message} [{code}, HTTP {status}]");
        }
        Ok(body)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let r = self.agent.get(&format!("{}{path}", self.base)).call();
        self.check(path, r)
    }

    /// Like [`Client::get`], but a 404 is `None`.
    pub fn get_opt(&self, path: &str) -> Result<Option<Value>> {
        let r = self.agent.get(&format!("{}{path}", self.base)).call();
        if matches!(&r, Ok(resp) if resp.status().as_u16() == 404) {
            return Ok(None);
        }
        self.check(path, r).map(Some)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .send_json(body);
        self.check(path, r)
    }
}
