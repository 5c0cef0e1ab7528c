//! The SQL page: an editor over the node's analytics tables (`POST /v1/sql`, served beside the
//! API when the node keeps them), the result as a table and a chart, saved queries as a
//! dashboard, and the tables' columns. The page renders without the node's help; the browser
//! asks the API.

use crate::Web;
use crate::render::{PageResult, blocking, page, v};
use axum::extract::State;
use minijinja::context;

/// A query the page offers as an example.
#[derive(Debug, serde::Serialize)]
struct Example {
    name: &'static str,
    sql: &'static str,
}

const EXAMPLES: &[Example] = &[
    Example {
        name: "Transactions per minute, by kind",
        sql: "SELECT date_trunc('minute', time) AS minute, kind, count(*) AS txs\nFROM transactions\nGROUP BY 1, 2\nORDER BY 1 DESC, 3 DESC\nLIMIT 50",
    },
    Example {
        name: "Fees per 100 blocks",
        sql: "SELECT height / 100 * 100 AS from_block, sum(fees) AS fees\nFROM blocks\nGROUP BY 1\nORDER BY 1",
    },
    Example {
        name: "Top receivers of transfers",
        sql: "SELECT \"to\", count(*) AS transfers, sum(amount) AS received\nFROM transfers\nGROUP BY 1\nORDER BY received DESC\nLIMIT 20",
    },
    Example {
        name: "Jobs per provider and model",
        sql: "SELECT provider, model, count(*) AS jobs, sum(output_tokens) AS tokens, sum(fee) AS fees\nFROM jobs\nWHERE status = 'settled'\nGROUP BY 1, 2\nORDER BY jobs DESC",
    },
    Example {
        name: "Verification outcomes",
        sql: "SELECT event, outcome, count(*) AS n\nFROM checks\nGROUP BY 1, 2\nORDER BY 3 DESC",
    },
    Example {
        name: "Subnet emission per epoch",
        sql: "SELECT netuid, epoch, emission, recycled\nFROM subnet_epochs\nORDER BY height DESC\nLIMIT 50",
    },
    Example {
        name: "Richest accounts",
        sql: "SELECT address, balance, bonded\nFROM accounts\nORDER BY balance DESC\nLIMIT 20",
    },
    Example {
        name: "Failed transactions and why",
        sql: "SELECT error_code, count(*) AS n, max(height) AS last_seen\nFROM transactions\nWHERE NOT success\nGROUP BY 1\nORDER BY 2 DESC",
    },
];

pub(crate) async fn show(State(web): State<Web>) -> PageResult {
    blocking(move || {
        page(
            &web,
            "sql.html",
            "sql",
            "SQL",
            context! { examples => v(&EXAMPLES) },
        )
    })
    .await
}
