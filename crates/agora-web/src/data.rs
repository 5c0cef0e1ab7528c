//! The data market (DESIGN.md §8): bounties (their escrow and where their items are), a
//! bounty's items through pre-screen and review, and a dataset's contributors, citations and
//! royalties.

use crate::Web;
use crate::render::{PageError, PageResult, blocking, page, v};
use agora_data::views;
use axum::extract::{Path, State};
use minijinja::context;

fn view_error(e: views::ViewError) -> PageError {
    PageError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "This page failed",
        e.to_string(),
    )
}

pub(crate) async fn list(State(web): State<Web>) -> PageResult {
    blocking(move || {
        let snap = web.node.snapshot()?;
        let all = views::bounties(&snap).map_err(view_error)?;
        let open = all
            .bounties
            .iter()
            .filter(|b| !b.settled && all.height <= b.spec.deadline)
            .count();
        let items: u64 = all.bounties.iter().map(|b| u64::from(b.items)).sum();
        let accepted: u64 = all.bounties.iter().map(|b| u64::from(b.accepted)).sum();
        let datasets = all.bounties.iter().filter(|b| b.dataset.is_some()).count();
        page(
            &web,
            "data.html",
            "data",
            "Data market",
            context! { all => v(&all), open, items, accepted, datasets },
        )
    })
    .await
}

pub(crate) async fn bounty(State(web): State<Web>, Path(id): Path<String>) -> PageResult {
    blocking(move || {
        let id: u64 = id
            .parse()
            .map_err(|_| PageError::not_found(format!("{id:?} is not a bounty id")))?;
        let snap = web.node.snapshot()?;
        let b = views::bounty(&snap, id, |_| false)
            .map_err(view_error)?
            .ok_or_else(|| PageError::not_found(format!("no bounty {id}")))?;
        let params = views::params(&snap).map_err(view_error)?;
        page(
            &web,
            "bounty.html",
            "data",
            &format!("Bounty {id}"),
            context! { b => v(&b), params => v(&params) },
        )
    })
    .await
}

pub(crate) async fn dataset(State(web): State<Web>, Path(root): Path<String>) -> PageResult {
    blocking(move || {
        let root: agora_types::Hash = root
            .parse()
            .map_err(|_| PageError::not_found(format!("{root:?} is not a dataset root")))?;
        let snap = web.node.snapshot()?;
        let d = views::dataset(&snap, &root)
            .map_err(view_error)?
            .ok_or_else(|| PageError::not_found(format!("no dataset {root}")))?;
        page(
            &web,
            "dataset.html",
            "data",
            "Dataset",
            context! { d => v(&d) },
        )
    })
    .await
}
