//! `agora search` and `agora feed`: a node's search and feeds (`GET /v1/search`,
//! `GET /v1/feed/{address}`), and an account's follows and likes, signed by its wallet.

use crate::wallet_cmd::{DEFAULT_NODE, read_password};
use agora_daemons::keystore::Keystore;
use agora_node_api::NodeClient;
use agora_search::feed::{Prefs, PrefsUpdate};
use agora_search::http::{FeedResponse, PrefsResponse, SearchParams, SearchResponse};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words, or a hash or address typed in whole.
    query: String,
    /// Only these kinds (account, tx, provider, model, job, subnet, neuron, audit, dashboard,
    /// article). Repeatable.
    #[arg(long)]
    kind: Vec<String>,
    /// Only objects about this account.
    #[arg(long)]
    address: Option<String>,
    /// Only objects of this subnet.
    #[arg(long)]
    subnet: Option<u16>,
    /// Only objects of this time or later (Unix milliseconds).
    #[arg(long)]
    since: Option<i64>,
    /// Only objects of this time or earlier (Unix milliseconds).
    #[arg(long)]
    until: Option<i64>,
    /// Most results (at most 100).
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// hybrid, bm25 or vector.
    #[arg(long, default_value = "hybrid")]
    mode: String,
    /// JSON output.
    #[arg(long)]
    json: bool,
    /// The node to ask.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    node: String,
}

/// `?a=b&…` of `pairs`.
fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, &v);
    }
    s.finish()
}

/// Text from a node, without anything a terminal would act on.
fn plain(s: &str) -> String {
    agora_search::doc::printable(s, false)
}

/// A snippet's `<b>` marks as the terminal's bold, its entities decoded.
fn terminal(snippet: &str) -> String {
    plain(snippet)
        .replace("<b>", "\x1b[1m")
        .replace("</b>", "\x1b[0m")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

pub fn search(args: SearchArgs) -> Result<()> {
    let params = SearchParams {
        q: args.query.clone(),
        kind: (!args.kind.is_empty()).then(|| args.kind.join(",")),
        since: args.since,
        until: args.until,
        address: args.address.clone(),
        subnet: args.subnet,
        limit: Some(args.limit),
        mode: Some(args.mode.clone()),
    };
    let pairs = serde_json::to_value(&params)?
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.as_str().to_string(), v)
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let path = format!(
        "/v1/search?{}",
        query_string(pairs.iter().map(|(k, v)| (k.as_str(), v.clone())))
    );
    let answer: SearchResponse = NodeClient::new(&args.node)
        .get(&path)
        .with_context(|| format!("searching on {}", args.node))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    if answer.hits.is_empty() {
        println!("Nothing found for {:?}.", args.query);
    }
    for (i, h) in answer.hits.iter().enumerate() {
        let how = if h.exact {
            "exact".to_string()
        } else {
            let rank = |r: Option<usize>| r.map_or("-".to_string(), |r| r.to_string());
            format!(
                "words {} meaning {}",
                rank(h.bm25_rank),
                rank(h.vector_rank)
            )
        };
        println!("{:>2}. [{}] {}  ({how})", i + 1, h.kind, plain(&h.title));
        println!("    {}", terminal(&h.snippet));
        println!("    {}", plain(h.url.as_deref().unwrap_or(&h.id)));
    }
    eprintln!(
        "{} results in {} ms (chain indexed to {})",
        answer.hits.len(),
        answer.took_ms,
        answer
            .height
            .map_or_else(|| "no block yet".into(), |h| h.to_string())
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct FeedArgs {
    #[command(subcommand)]
    command: Option<FeedCommand>,
    /// The account whose feed to show.
    address: Option<String>,
    /// Most items (at most 50).
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// JSON output.
    #[arg(long)]
    json: bool,
    /// The node to ask.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE, global = true)]
    node: String,
}

#[derive(Debug, Subcommand)]
enum FeedCommand {
    /// Change a wallet's follows and likes (signed by the wallet; kept by the node).
    Prefs {
        /// The wallet whose preferences change.
        #[arg(long)]
        from: String,
        /// Follow an account. Repeatable.
        #[arg(long)]
        follow: Vec<String>,
        /// Follow a subnet. Repeatable.
        #[arg(long)]
        subnet: Vec<u16>,
        /// Follow a topic (words). Repeatable.
        #[arg(long)]
        topic: Vec<String>,
        /// Like a document (its id, as `agora search --json` shows). Repeatable.
        #[arg(long)]
        like: Vec<String>,
        /// Stop following or liking this (an address, subnet number, topic or id).
        /// Repeatable.
        #[arg(long)]
        drop: Vec<String>,
        /// Read the passphrase from this file (else AGORA_PASSWORD, else a prompt).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

fn push_new<T: PartialEq>(list: &mut Vec<T>, items: impl IntoIterator<Item = T>) {
    for i in items {
        if !list.contains(&i) {
            list.push(i);
        }
    }
}

pub fn feed(home: &Path, args: FeedArgs) -> Result<()> {
    let client = NodeClient::new(&args.node);
    if let Some(FeedCommand::Prefs {
        from,
        follow,
        subnet,
        topic,
        like,
        drop,
        password_file,
    }) = args.command
    {
        let key =
            Keystore::new(home).unlock(&from, &read_password(password_file.as_deref(), false)?)?;
        let address = key.address().to_string();
        let current: PrefsResponse = client
            .get(&format!("/v1/feed/{address}/prefs"))
            .with_context(|| format!("reading the preferences on {}", args.node))?;
        let mut prefs: Prefs = current.prefs;
        push_new(&mut prefs.accounts, follow);
        push_new(&mut prefs.subnets, subnet);
        push_new(&mut prefs.topics, topic);
        push_new(&mut prefs.likes, like);
        for d in &drop {
            prefs.accounts.retain(|a| a != d);
            prefs.topics.retain(|t| t != d);
            prefs.likes.retain(|l| l != d);
            prefs.subnets.retain(|s| s.to_string() != *d);
        }
        let chain_id = client.status()?.chain_id;
        let update = PrefsUpdate::sign(&chain_id, &key, current.nonce + 1, prefs);
        let saved: PrefsResponse = client
            .post(&format!("/v1/feed/{address}/prefs"), &update)
            .with_context(|| format!("saving the preferences on {}", args.node))?;
        println!("{}", serde_json::to_string_pretty(&saved)?);
        return Ok(());
    }
    let Some(address) = args.address else {
        bail!("give an account: agora feed ADDRESS (or agora feed prefs --from WALLET …)");
    };
    let answer: FeedResponse = client
        .get(&format!(
            "/v1/feed/{address}?{}",
            query_string([("limit", args.limit.to_string())])
        ))
        .with_context(|| format!("reading the feed on {}", args.node))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let feed = &answer.feed;
    println!(
        "Feed of {} ({} items of its activity read; following: {})",
        feed.address,
        feed.activity,
        if feed.following.is_empty() {
            "nothing yet".to_string()
        } else {
            plain(&feed.following.join("; "))
        }
    );
    for (i, item) in feed.items.iter().enumerate() {
        println!("{:>2}. [{}] {}", i + 1, item.kind, plain(&item.title));
        println!("    why: {}", plain(&item.reasons.join("; ")));
        println!("    {}", plain(item.url.as_deref().unwrap_or(&item.id)));
    }
    Ok(())
}
