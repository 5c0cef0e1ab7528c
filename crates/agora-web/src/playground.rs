//! The playground: chat with a model through the gateway (tokens streamed into the page, then
//! the receipt, then the job's settlement and verification as the chain records them), and
//! embeddings of a few texts with their similarity matrix; and the auditor's page. The page talks to the gateway from
//! the browser with the API key its user types; the node never sees the key.

use crate::Web;
use crate::render::{PageResult, blocking, page, v};
use agora_api::views;
use agora_types::ModelKind;
use axum::extract::State;
use minijinja::context;

pub(crate) async fn show(State(web): State<Web>) -> PageResult {
    blocking(move || {
        let snap = web.node.snapshot()?;
        let models = views::models(&snap)?.models;
        let chat: Vec<&str> = models
            .iter()
            .filter(|m| m.kind == ModelKind::Chat)
            .map(|m| m.name.as_str())
            .collect();
        let embed: Vec<&str> = models
            .iter()
            .filter(|m| m.kind == ModelKind::Embedding)
            .map(|m| m.name.as_str())
            .collect();
        let gateway = web.links.gateway.get().cloned().unwrap_or_default();
        page(
            &web,
            "playground.html",
            "playground",
            "Playground",
            context! { chat => v(&chat), embed => v(&embed), gateway },
        )
    })
    .await
}

/// The auditor's page: contracts in, findings beside their lines out, through the gateway.
pub(crate) async fn audit(State(web): State<Web>) -> PageResult {
    blocking(move || {
        let gateway = web.links.gateway.get().cloned().unwrap_or_default();
        // The chat model that explains findings: the first one registered.
        let chat_model = views::models(&web.node.snapshot()?)?
            .models
            .into_iter()
            .find(|m| m.kind == ModelKind::Chat)
            .map(|m| m.name)
            .unwrap_or_default();
        page(
            &web,
            "audit.html",
            "audit",
            "Audit",
            context! { gateway, chat_model },
        )
    })
    .await
}
