//! `agora subnet …`: the model market from the command line (DESIGN.md §7).

use crate::wallet_cmd::{QueryOpts, TxOpts, send};
use agora_node_api::{MetagraphResponse, NodeClient, SubnetResponse, SubnetSummary};
use agora_types::{Address, Hash, Message, SubnetParam, SubnetTask, format_amount, parse_amount};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum SubnetCommand {
    /// Create a subnet owned by the wallet, burning the current lock cost.
    Create {
        #[command(flatten)]
        opts: TxOpts,
        /// Its name.
        #[arg(long)]
        name: String,
        /// `chat`, `embeddings`, `forecast`, or `custom:NAME:SPEC_HASH`.
        #[arg(long)]
        task: String,
        /// The most to burn (default: the lock cost now, so a rise in between fails).
        #[arg(long)]
        max_lock: Option<String>,
    },
    /// Every subnet, the lock cost now, and emission so far.
    List(QueryOpts),
    /// A subnet: hyperparameters, last epochs, waiting commitments.
    Show {
        netuid: u16,
        #[command(flatten)]
        q: QueryOpts,
    },
    /// Every UID of a subnet: hotkey, stake, rank, trust, consensus, incentive, dividends,
    /// emission, last update.
    Metagraph {
        netuid: u16,
        #[command(flatten)]
        q: QueryOpts,
    },
    /// Register the wallet as a neuron of a subnet, burning the registration burn.
    Register {
        netuid: u16,
        #[command(flatten)]
        opts: TxOpts,
        /// Where it serves (a miner's provider API).
        #[arg(long)]
        endpoint: String,
        /// The most to burn (default: the burn now).
        #[arg(long)]
        max_burn: Option<String>,
    },
    /// Delegate stake to a hotkey on a subnet (counts from the epoch after a full tempo).
    Stake {
        netuid: u16,
        #[command(flatten)]
        opts: TxOpts,
        /// The neuron staked on (default: the wallet's own).
        #[arg(long)]
        hotkey: Option<String>,
        #[arg(long)]
        amount: String,
    },
    /// Take delegated stake back (it unbonds).
    Unstake {
        netuid: u16,
        #[command(flatten)]
        opts: TxOpts,
        /// The neuron it was staked on (default: the wallet's own).
        #[arg(long)]
        hotkey: Option<String>,
        #[arg(long)]
        amount: String,
    },
    /// Change a hyperparameter (the owner only, within bounds): tempo, max_uids,
    /// immunity_period, kappa, bonds_moving_average, bond_penalty, weights_rate_limit,
    /// commit_reveal_period, max_validators, activity_cutoff, min_burn, max_burn,
    /// target_registrations, validator_take.
    SetHyperparameter {
        netuid: u16,
        #[command(flatten)]
        opts: TxOpts,
        #[arg(long)]
        name: String,
        #[arg(long)]
        value: String,
    },
    /// Commit to weights (`UID=WEIGHT,…`); the salt is kept under the home directory for
    /// `reveal-weights`, which opens in the next epoch.
    CommitWeights {
        netuid: u16,
        #[command(flatten)]
        opts: TxOpts,
        #[arg(long)]
        weights: String,
    },
    /// Reveal the weights committed with `commit-weights`.
    RevealWeights {
        netuid: u16,
        #[command(flatten)]
        opts: TxOpts,
    },
    /// Validate a chat subnet: every epoch window, ask each miner prompts drawn from the
    /// evaluation pool with chain randomness (paid jobs from the wallet's escrow), score the
    /// answers (exact match, MiniLM similarity, latency, price) and set weights by
    /// commit-reveal. Runs until stopped.
    Validate {
        netuid: u16,
        /// The validator's wallet: registered on the subnet, with stake and compute escrow.
        #[arg(long)]
        from: String,
        /// The node's API.
        #[arg(long, env = "AGORA_NODE", default_value = crate::wallet_cmd::DEFAULT_NODE)]
        node: String,
        /// Read the passphrase from this file (else AGORA_PASSWORD, else a prompt).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Prompts per miner per window.
        #[arg(long, default_value_t = 4)]
        prompts: usize,
        /// Most tokens per answer.
        #[arg(long, default_value_t = 24)]
        max_tokens: u32,
        /// Each round as a JSON line.
        #[arg(long)]
        json: bool,
    },
    /// Mine a subnet. A chat or embeddings subnet: register the provider's key at its endpoint
    /// and serve the market as `agora provider` does. A forecast subnet (with `--from`): commit a
    /// forecast of the next window's fees every window and reveal it in the next.
    Mine {
        netuid: u16,
        /// A forecast miner's wallet.
        #[arg(long)]
        from: Option<String>,
        /// Read the passphrase from this file (else AGORA_PASSWORD, else a prompt).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// A forecast miner's model: `predict` (the baseline: `agora predict`'s AutoETS over
        /// the windows so far), `persistence` (the last window again), `mean:N` (of the last N
        /// windows) or `constant:V`.
        #[arg(long, default_value = "predict")]
        forecast: String,
        #[command(flatten)]
        provider: agora_daemons::market::ProviderArgs,
    },
}

fn parse_forecast(s: &str) -> Result<std::sync::Arc<dyn agora_market::subnet::Predictor>> {
    use agora_market::subnet::ForecastModel;
    use std::sync::Arc;
    Ok(match s.split_once(':') {
        None if s == "predict" => Arc::new(agora_daemons::subnets::PredictBaseline),
        None if s == "persistence" => Arc::new(ForecastModel::Persistence),
        Some(("mean", n)) => Arc::new(ForecastModel::Mean(n.parse().context("mean:N, N windows")?)),
        Some(("constant", v)) => {
            Arc::new(ForecastModel::Constant(v.parse().context("constant:V")?))
        }
        _ => bail!("forecast model {s:?}: predict, persistence, mean:N or constant:V"),
    })
}

/// `UID=WEIGHT,UID=WEIGHT…`.
pub fn parse_weights(s: &str) -> Result<(Vec<u16>, Vec<u16>)> {
    let mut uids = Vec::new();
    let mut weights = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (u, w) = part
            .split_once('=')
            .with_context(|| format!("{part:?} is not UID=WEIGHT"))?;
        uids.push(u.trim().parse().with_context(|| format!("UID {u:?}"))?);
        weights.push(
            w.trim()
                .parse()
                .with_context(|| format!("weight {w:?} (0 to 65535)"))?,
        );
    }
    if uids.is_empty() {
        bail!("no weights: give UID=WEIGHT pairs, e.g. 1=3,2=1");
    }
    Ok((uids, weights))
}

fn parse_task(s: &str) -> Result<SubnetTask> {
    Ok(match s {
        "chat" => SubnetTask::Chat,
        "embeddings" => SubnetTask::Embeddings,
        "forecast" => SubnetTask::Forecast,
        other => {
            let Some(rest) = other.strip_prefix("custom:") else {
                bail!("task {other:?}: chat, embeddings, forecast or custom:NAME:SPEC_HASH");
            };
            let (name, spec) = rest
                .rsplit_once(':')
                .context("a custom task is custom:NAME:SPEC_HASH")?;
            SubnetTask::Custom {
                name: name.to_string(),
                spec: spec
                    .parse()
                    .map_err(|_| anyhow::anyhow!("the spec hash is 64 hex digits"))?,
            }
        }
    })
}

/// A hyperparameter by name.
pub fn parse_param(name: &str, value: &str) -> Result<SubnetParam> {
    let int = |v: &str| -> Result<u64> { v.parse().with_context(|| format!("{name}: {v:?}")) };
    let small = |v: &str| -> Result<u16> { v.parse().with_context(|| format!("{name}: {v:?}")) };
    let ppm = |v: &str| -> Result<u32> { v.parse().with_context(|| format!("{name}: {v:?}")) };
    Ok(match name {
        "tempo" => SubnetParam::Tempo(int(value)?),
        "max_uids" => SubnetParam::MaxUids(small(value)?),
        "immunity_period" => SubnetParam::ImmunityPeriod(int(value)?),
        "kappa" => SubnetParam::Kappa(small(value)?),
        "bonds_moving_average" => SubnetParam::BondsMovingAverage(ppm(value)?),
        "bond_penalty" => SubnetParam::BondPenalty(small(value)?),
        "weights_rate_limit" => SubnetParam::WeightsRateLimit(int(value)?),
        "commit_reveal_period" => SubnetParam::CommitRevealPeriod(int(value)?),
        "max_validators" => SubnetParam::MaxValidators(small(value)?),
        "activity_cutoff" => SubnetParam::ActivityCutoff(int(value)?),
        "min_burn" => SubnetParam::MinBurn(parse_amount(value)?),
        "max_burn" => SubnetParam::MaxBurn(parse_amount(value)?),
        "target_registrations" => SubnetParam::TargetRegistrations(small(value)?),
        "validator_take" => SubnetParam::ValidatorTake(ppm(value)?),
        other => {
            bail!("no hyperparameter {other:?} (see `agora subnet set-hyperparameter --help`)")
        }
    })
}

/// Where `commit-weights` keeps what `reveal-weights` needs.
fn commit_file(home: &Path, netuid: u16, wallet: &str) -> PathBuf {
    home.join("subnets")
        .join(format!("commit-{netuid}-{wallet}.json"))
}

fn address_of(home: &Path, opts: &TxOpts, hotkey: Option<String>) -> Result<Address> {
    match hotkey {
        Some(h) => Ok(h.parse()?),
        None => Ok(crate::keystore::Keystore::new(home)
            .load(&opts.from)
            .with_context(|| format!("no wallet {:?}", opts.from))?
            .address),
    }
}

fn print_summary(s: &SubnetSummary) {
    println!(
        "{:>6}  {:<20} {:<11} {:>4}/{:<4} tempo {:<6} stake {:<16} burn {:<12} next epoch {}",
        s.netuid,
        s.name,
        s.task.label(),
        s.n,
        s.max_uids,
        s.tempo,
        format_amount(s.stake),
        format_amount(s.burn),
        s.next_epoch
    );
}

fn print_subnet(s: &SubnetResponse) {
    print_summary(&s.summary);
    let p = &s.subnet.params;
    println!("owner     {}", s.subnet.owner);
    println!(
        "params    kappa {} · bonds moving average {} ppm · immunity {} · weights rate limit {} · commit-reveal {} epoch(s) · validators {} · take {} ppm",
        p.kappa,
        p.bonds_moving_average,
        p.immunity_period,
        p.weights_rate_limit,
        p.commit_reveal_period,
        p.max_validators,
        p.validator_take
    );
    println!(
        "epochs    {} (last at {})",
        s.subnet.epochs, s.subnet.last_epoch
    );
    for e in &s.history {
        println!(
            "  epoch at {:>8}: paid {} (burned {}), {} transactions",
            e.height,
            format_amount(e.emission),
            format_amount(e.recycled),
            e.observed
        );
    }
    println!("commitments waiting: {}", s.commits.len());
}

fn print_metagraph(m: &MetagraphResponse) {
    println!(
        "{:>4}  {:<44} {:>16} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>16} {:>8}",
        "uid",
        "hotkey",
        "stake",
        "rank",
        "trust",
        "consensus",
        "incentive",
        "dividends",
        "vtrust",
        "emission",
        "updated"
    );
    for n in &m.neurons {
        println!(
            "{:>4}{} {:<44} {:>16} {:>8.5} {:>8.5} {:>9.5} {:>9.5} {:>9.5} {:>9.5} {:>16} {:>8}",
            n.uid,
            if n.validator_permit { "*" } else { " " },
            n.hotkey.to_string(),
            format_amount(n.stake),
            n.rank,
            n.trust,
            n.consensus,
            n.incentive,
            n.dividends,
            n.validator_trust,
            format_amount(n.emission),
            n.last_update
        );
    }
    println!("(* holds a validator permit)");
}

fn json_out<T: serde::Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `agora subnet …`.
pub fn subnet(home: PathBuf, models: PathBuf, cmd: SubnetCommand) -> Result<()> {
    match cmd {
        SubnetCommand::Validate {
            netuid,
            from,
            node,
            password_file,
            prompts,
            max_tokens,
            json,
        } => {
            let key = crate::keystore::Keystore::new(&home).unlock(
                &from,
                &agora_daemons::read_password(password_file.as_deref(), false)?,
            )?;
            agora_daemons::subnets::validate(
                &home, &models, &node, key, netuid, prompts, max_tokens, json,
            )
        }
        SubnetCommand::Mine {
            netuid,
            from,
            password_file,
            forecast,
            provider,
        } => {
            let task = NodeClient::new(provider.node())
                .subnet(netuid)?
                .with_context(|| format!("no subnet {netuid}"))?
                .subnet
                .task;
            if task == SubnetTask::Forecast {
                let from = from.context("a forecast miner signs with a wallet: pass --from")?;
                let key = crate::keystore::Keystore::new(&home).unlock(
                    &from,
                    &agora_daemons::read_password(password_file.as_deref(), false)?,
                )?;
                agora_daemons::subnets::mine_forecast(
                    provider.node(),
                    key,
                    netuid,
                    parse_forecast(&forecast)?,
                )
            } else {
                agora_daemons::subnets::mine_serving(home, models, netuid, provider)
            }
        }
        SubnetCommand::List(q) => {
            let all = NodeClient::new(&q.node).subnets()?;
            if q.json {
                return json_out(&all);
            }
            println!(
                "{} subnet(s); creating one burns {} now; minted {}, burned {}",
                all.subnets.len(),
                format_amount(all.lock_cost),
                format_amount(all.emission.minted),
                format_amount(all.emission.burned)
            );
            for s in &all.subnets {
                print_summary(s);
            }
            Ok(())
        }
        SubnetCommand::Show { netuid, q } => {
            let s = NodeClient::new(&q.node)
                .subnet(netuid)?
                .with_context(|| format!("no subnet {netuid}"))?;
            if q.json {
                return json_out(&s);
            }
            print_subnet(&s);
            Ok(())
        }
        SubnetCommand::Metagraph { netuid, q } => {
            let m = NodeClient::new(&q.node)
                .metagraph(netuid)?
                .with_context(|| format!("no subnet {netuid}"))?;
            if q.json {
                return json_out(&m);
            }
            print_metagraph(&m);
            Ok(())
        }
        SubnetCommand::Create {
            opts,
            name,
            task,
            max_lock,
        } => {
            let max_lock = match max_lock {
                Some(m) => parse_amount(&m)?,
                None => NodeClient::new(&opts.node).subnets()?.lock_cost,
            };
            let message = Message::CreateSubnet {
                name,
                task: parse_task(&task)?,
                max_lock,
            };
            send(&home, &opts, vec![message]).map(|_| ())
        }
        SubnetCommand::Register {
            netuid,
            opts,
            endpoint,
            max_burn,
        } => {
            let max_burn = match max_burn {
                Some(m) => parse_amount(&m)?,
                None => {
                    NodeClient::new(&opts.node)
                        .subnet(netuid)?
                        .with_context(|| format!("no subnet {netuid}"))?
                        .summary
                        .burn
                }
            };
            let message = Message::RegisterNeuron {
                netuid,
                endpoint,
                max_burn,
            };
            send(&home, &opts, vec![message]).map(|_| ())
        }
        SubnetCommand::Stake {
            netuid,
            opts,
            hotkey,
            amount,
        } => {
            let message = Message::AddSubnetStake {
                netuid,
                hotkey: address_of(&home, &opts, hotkey)?,
                amount: parse_amount(&amount)?,
            };
            send(&home, &opts, vec![message]).map(|_| ())
        }
        SubnetCommand::Unstake {
            netuid,
            opts,
            hotkey,
            amount,
        } => {
            let message = Message::RemoveSubnetStake {
                netuid,
                hotkey: address_of(&home, &opts, hotkey)?,
                amount: parse_amount(&amount)?,
            };
            send(&home, &opts, vec![message]).map(|_| ())
        }
        SubnetCommand::SetHyperparameter {
            netuid,
            opts,
            name,
            value,
        } => {
            let message = Message::SetSubnetParam {
                netuid,
                param: parse_param(&name, &value)?,
            };
            send(&home, &opts, vec![message]).map(|_| ())
        }
        SubnetCommand::CommitWeights {
            netuid,
            opts,
            weights,
        } => {
            let (uids, weights) = parse_weights(&weights)?;
            let hotkey = address_of(&home, &opts, None)?;
            let mut salt = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
            let salt = Hash(salt);
            let commitment =
                agora_types::weights_commitment(netuid, &hotkey, &uids, &weights, &salt);
            let file = commit_file(&home, netuid, &opts.from);
            let saved = json!({ "uids": uids, "weights": weights, "salt": salt });
            agora_types::durable::write(
                &file,
                serde_json::to_string(&saved)?.as_bytes(),
                agora_types::durable::Access::Private,
            )
            .with_context(|| format!("keeping the salt in {}", file.display()))?;
            send(
                &home,
                &opts,
                vec![Message::CommitWeights { netuid, commitment }],
            )?;
            if !opts.json {
                println!(
                    "Committed; reveal with `agora subnet reveal-weights {netuid} --from {}` after the next epoch",
                    opts.from
                );
            }
            Ok(())
        }
        SubnetCommand::RevealWeights { netuid, opts } => {
            let file = commit_file(&home, netuid, &opts.from);
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "no commitment kept in {} (commit with `agora subnet commit-weights` first)",
                    file.display()
                )
            })?;
            #[derive(serde::Deserialize)]
            struct Saved {
                uids: Vec<u16>,
                weights: Vec<u16>,
                salt: Hash,
            }
            let saved: Saved = serde_json::from_str(&text)
                .with_context(|| format!("{} is corrupt", file.display()))?;
            send(
                &home,
                &opts,
                vec![Message::RevealWeights {
                    netuid,
                    uids: saved.uids,
                    weights: saved.weights,
                    salt: saved.salt,
                }],
            )?;
            std::fs::remove_file(&file).ok();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_tasks_and_params_parse_or_say_why_not() {
        assert_eq!(parse_weights("1=3, 2=1").unwrap(), (vec![1, 2], vec![3, 1]));
        assert!(parse_weights("").is_err());
        assert!(parse_weights("1:3").is_err());
        assert!(parse_weights("1=70000").is_err());
        assert_eq!(parse_task("forecast").unwrap(), SubnetTask::Forecast);
        let custom = format!("custom:sql:{}", Hash([7; 32]));
        assert!(
            matches!(parse_task(&custom).unwrap(), SubnetTask::Custom { name, .. } if name == "sql")
        );
        assert!(parse_task("dance").is_err());
        assert_eq!(
            parse_param("tempo", "100").unwrap(),
            SubnetParam::Tempo(100)
        );
        assert!(parse_param("tempo", "x").is_err());
        assert!(parse_param("colour", "1").is_err());
        assert!(parse_forecast("persistence").is_ok());
        assert!(parse_forecast("predict").is_ok());
        assert!(parse_forecast("mean:3").is_ok());
        assert!(parse_forecast("constant:7").is_ok());
        assert!(parse_forecast("mean").is_err());
    }
}
