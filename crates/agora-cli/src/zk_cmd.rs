//! `agora zk …`: zero-knowledge proofs of inference (DESIGN.md §9). Build or inspect a provable
//! model, register its verifying key, prove a claim about a private input (for an attestation or a
//! job), verify a proof locally, and send attestations and certifications.

use crate::wallet_cmd::{QueryOpts, TxOpts, send};
use agora_node_api::NodeClient;
use agora_state::{claim_statement, zk_attest_context, zk_job_context};
use agora_types::{Address, Hash, Message, ZkClaim, commitment_hash};
use agora_zk::risk::{Activity, FEATURES, features, risk_model};
use agora_zk::{ProvingKey, VerifyingKey, ZkModel, input_commitment};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Subcommand)]
pub enum ZkCommand {
    /// Write a model file: the built-in risk scorer (`risk`), the topic classifier over MiniLM
    /// embeddings (`topic`), or a synthetic MLP of a given shape (`--shape 384-256-8`), for
    /// trials and benchmarks.
    Model {
        /// `risk`, `topic` or `synthetic`.
        kind: String,
        /// Layer sizes of a synthetic model, inputs first.
        #[arg(long, default_value = "16-8-2")]
        shape: String,
        /// Seed of a synthetic model's weights.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// A model's id and verifying key (hex): what the chain keeps of it.
    Key {
        /// The model file.
        model: PathBuf,
    },
    /// Register a model on chain (`RegisterZkModel`: the chain derives its key from the file).
    Register {
        #[command(flatten)]
        opts: TxOpts,
        /// The model file.
        model: PathBuf,
        /// A name for people.
        #[arg(long)]
        name: Option<String>,
    },
    /// The risk scorer's features of an account, read from a node (private input for `prove`).
    Features {
        /// The account.
        address: String,
        #[command(flatten)]
        q: QueryOpts,
    },
    /// The commitment to an input under a salt (what a certifier certifies).
    Commitment {
        /// The input: comma-separated integers in [-128, 127].
        #[arg(long, allow_hyphen_values = true)]
        input: String,
        /// The salt: 8 comma-separated words below 2^31 - 2^27 + 1.
        #[arg(long)]
        salt: String,
    },
    /// Prove a claim about a private input: output 0 below `--threshold` (or not), and the
    /// outputs unless `--hide`. Bound to the next attestation of `--attester` on the node's chain,
    /// or to the job `--job`.
    Prove {
        /// The model file.
        model: PathBuf,
        /// The input: comma-separated integers in [-128, 127].
        #[arg(long, allow_hyphen_values = true)]
        input: String,
        /// The salt of the input's commitment (default: random, printed).
        #[arg(long)]
        salt: Option<String>,
        /// The threshold on output 0.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        threshold: i64,
        /// Keep the outputs private: only the predicate is shown.
        #[arg(long)]
        hide: bool,
        /// Bind the proof to this account's next attestation.
        #[arg(long)]
        attester: Option<String>,
        /// Bind the proof to this job id.
        #[arg(long)]
        job: Option<String>,
        /// The node (its chain id, and the attester's next attestation number).
        #[arg(long, env = "AGORA_NODE", default_value = crate::wallet_cmd::DEFAULT_NODE)]
        node: String,
        /// Where to write the proof.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify a proof file against a model file or the key registered on the node.
    Verify {
        /// The proof file.
        proof: PathBuf,
        /// The model file (default: the key registered on the node).
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        q: QueryOpts,
    },
    /// Send a proof as an attestation (`ZkAttest`); the chain verifies it and records it.
    Attest {
        #[command(flatten)]
        opts: TxOpts,
        /// The proof file (made with `--attester` set to this wallet).
        proof: PathBuf,
        /// The account that certified the input commitment, if any.
        #[arg(long)]
        certifier: Option<String>,
    },
    /// Certify that a commitment commits to an account's input (`CertifyZkInput`).
    Certify {
        #[command(flatten)]
        opts: TxOpts,
        /// Whose input.
        subject: String,
        /// The commitment (64 hex digits).
        commitment: String,
    },
    /// The provable models registered on the node's chain.
    Models {
        #[command(flatten)]
        q: QueryOpts,
    },
    /// An account's attestations.
    Attestations {
        address: String,
        #[command(flatten)]
        q: QueryOpts,
    },
}

/// A proof and what it is bound to, as `prove` writes it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProofFile {
    pub chain_id: String,
    pub claim: ZkClaim,
    /// The attester and attestation number, or the job id.
    pub attester: Option<(Address, u64)>,
    pub job: Option<Hash>,
    #[serde(with = "hex_bytes")]
    pub proof: Vec<u8>,
}

mod hex_bytes {
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

fn read_model(path: &Path) -> Result<ZkModel> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ZkModel::from_bytes(&bytes).with_context(|| format!("{} is not a model", path.display()))
}

fn parse_input(s: &str) -> Result<Vec<i8>> {
    s.split(',')
        .map(|v| {
            v.trim()
                .parse::<i8>()
                .with_context(|| format!("{v:?} is not an integer in [-128, 127]"))
        })
        .collect()
}

fn parse_salt(s: &str) -> Result<[u32; 8]> {
    let words: Vec<u32> = s
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .with_context(|| format!("{v:?} is not a salt word"))
        })
        .collect::<Result<_>>()?;
    words
        .try_into()
        .map_err(|_| anyhow::anyhow!("a salt is 8 comma-separated words"))
}

pub fn zk(home: PathBuf, cmd: ZkCommand) -> Result<()> {
    match cmd {
        ZkCommand::Model {
            kind,
            shape,
            seed,
            out,
        } => {
            let model = match kind.as_str() {
                "risk" => risk_model(),
                "topic" => agora_zk::topic::topic_model()?,
                "synthetic" => {
                    let sizes: Vec<u32> = shape
                        .split('-')
                        .map(|s| s.trim().parse())
                        .collect::<Result<_, _>>()
                        .with_context(|| {
                            format!("a shape is layer sizes like 384-256-8, not {shape}")
                        })?;
                    ZkModel::synthetic(&format!("synthetic-{shape}"), &sizes, seed)?
                }
                other => bail!("a model is `risk`, `topic` or `synthetic`, not {other:?}"),
            };
            std::fs::write(&out, model.to_bytes())?;
            println!(
                "{} ({} weights) → {}",
                model.name,
                model.params(),
                out.display()
            );
            Ok(())
        }
        ZkCommand::Key { model } => {
            let pk = ProvingKey::new(read_model(&model)?)?;
            let vk = pk.verifying_key();
            println!("model id  {}", Hash(vk.model_id()));
            println!("weights   {}", vk.arch.params());
            println!("key       {}", hex::encode(vk.to_bytes()));
            Ok(())
        }
        ZkCommand::Register { opts, model, name } => {
            let m = read_model(&model)?;
            let name = name.unwrap_or_else(|| m.name.clone());
            let file = m.to_bytes();
            let pk = ProvingKey::new(m)?;
            println!("model id {}", Hash(pk.verifying_key().model_id()));
            send(
                &home,
                &opts,
                vec![Message::RegisterZkModel { name, model: file }],
            )
            .map(|_| ())
        }
        ZkCommand::Features { address, q } => {
            let address: Address = address.parse()?;
            let client = NodeClient::new(&q.node);
            let account = client
                .account(&address)?
                .map(|a| a.account)
                .unwrap_or_default();
            let provider = client.provider(&address)?;
            let agr = |units: u128| units / agora_types::AGR;
            let activity = Activity {
                balance: agr(account.balance),
                bonded: agr(account.bonded),
                nonce: account.nonce,
                escrow: agr(client.escrow(&address)?.balance),
                provider: provider.is_some(),
                jobs_settled: provider.map_or(0, |p| p.provider.jobs_settled),
                verifier: client.verifiers()?.iter().any(|v| v.address == address),
                review_stake: {
                    let r: agora_data::views::ReviewerResponse =
                        client.get(&format!("/v1/data/reviewers/{address}"))?;
                    agr(r.reviewer.stake)
                },
            };
            let f = features(&activity);
            if q.json {
                println!(
                    "{}",
                    serde_json::json!({ "features": f, "names": FEATURES })
                );
            } else {
                for (name, v) in FEATURES.iter().zip(f) {
                    println!("{name:<14} {v}");
                }
                let list: Vec<String> = f.iter().map(|v| v.to_string()).collect();
                println!("--input {}", list.join(","));
            }
            Ok(())
        }
        ZkCommand::Commitment { input, salt } => {
            let c = input_commitment(&parse_input(&input)?, &parse_salt(&salt)?);
            println!("{}", commitment_hash(&c));
            Ok(())
        }
        ZkCommand::Prove {
            model,
            input,
            salt,
            threshold,
            hide,
            attester,
            job,
            node,
            out,
        } => {
            let input = parse_input(&input)?;
            let salt = match salt {
                Some(s) => parse_salt(&s)?,
                None => {
                    let s = agora_zk::random_salt()?;
                    let words: Vec<String> = s.iter().map(|w| w.to_string()).collect();
                    println!(
                        "salt {} (keep it: it opens the commitment)",
                        words.join(",")
                    );
                    s
                }
            };
            let client = NodeClient::new(&node);
            let chain_id = client.status()?.chain_id;
            let (context, attester, job) = match (attester, job) {
                (Some(a), None) => {
                    let address: Address = a.parse()?;
                    let seq = client.zk_attestations(&address)?.next_seq;
                    (
                        zk_attest_context(&chain_id, &address, seq),
                        Some((address, seq)),
                        None,
                    )
                }
                (None, Some(j)) => {
                    let id: Hash = j
                        .parse()
                        .map_err(|_| anyhow::anyhow!("a job id is 64 hex digits"))?;
                    (zk_job_context(&chain_id, &id), None, Some(id))
                }
                _ => bail!("bind the proof to one of --attester ADDRESS or --job ID"),
            };
            let pk = ProvingKey::new(read_model(&model)?)?;
            let start = Instant::now();
            let (st, proof) = pk.prove(&input, &salt, threshold, hide, &context)?;
            let secs = start.elapsed().as_secs_f64();
            let claim = ZkClaim {
                model: Hash(pk.verifying_key().model_id()),
                input_commitment: commitment_hash(&st.input_commitment),
                threshold: st.t,
                below: st.below,
                outputs: st.outputs,
            };
            let file = ProofFile {
                chain_id,
                claim,
                attester,
                job,
                proof,
            };
            std::fs::write(&out, serde_json::to_vec_pretty(&file)?)?;
            println!(
                "proved in {secs:.2} s: output 0 {} {} ({} bytes) → {}",
                if file.claim.below { "<" } else { "≥" },
                file.claim.threshold,
                file.proof.len(),
                out.display()
            );
            Ok(())
        }
        ZkCommand::Verify { proof, model, q } => {
            let file: ProofFile = serde_json::from_slice(&std::fs::read(&proof)?)
                .with_context(|| format!("{} is not a proof file", proof.display()))?;
            let vk = match model {
                Some(m) => ProvingKey::new(read_model(&m)?)?.verifying_key().clone(),
                None => {
                    let entry = NodeClient::new(&q.node)
                        .zk_model(&file.claim.model)?
                        .with_context(|| {
                            format!("no provable model {} on the node", file.claim.model)
                        })?;
                    VerifyingKey::from_bytes(&entry.record.key)?
                }
            };
            if Hash(vk.model_id()) != file.claim.model {
                bail!(
                    "the proof is for model {}, not this one ({})",
                    file.claim.model,
                    Hash(vk.model_id())
                );
            }
            let context = match (file.attester, file.job) {
                (Some((a, seq)), _) => zk_attest_context(&file.chain_id, &a, seq),
                (None, Some(j)) => zk_job_context(&file.chain_id, &j),
                _ => bail!("the proof file names neither an attester nor a job"),
            };
            let start = Instant::now();
            agora_zk::verify(&vk, &claim_statement(&file.claim), &context, &file.proof)?;
            println!("valid ({:.1} ms)", start.elapsed().as_secs_f64() * 1e3);
            Ok(())
        }
        ZkCommand::Attest {
            opts,
            proof,
            certifier,
        } => {
            let file: ProofFile = serde_json::from_slice(&std::fs::read(&proof)?)
                .with_context(|| format!("{} is not a proof file", proof.display()))?;
            let certifier = certifier.map(|c| c.parse::<Address>()).transpose()?;
            send(
                &home,
                &opts,
                vec![Message::ZkAttest {
                    claim: file.claim,
                    certifier,
                    proof: file.proof,
                }],
            )
            .map(|_| ())
        }
        ZkCommand::Certify {
            opts,
            subject,
            commitment,
        } => {
            let subject: Address = subject.parse()?;
            let commitment: Hash = commitment
                .parse()
                .map_err(|_| anyhow::anyhow!("a commitment is 64 hex digits"))?;
            send(
                &home,
                &opts,
                vec![Message::CertifyZkInput {
                    subject,
                    commitment,
                }],
            )
            .map(|_| ())
        }
        ZkCommand::Models { q } => {
            let models = NodeClient::new(&q.node).zk_models()?;
            if q.json {
                println!("{}", serde_json::to_string_pretty(&models)?);
            } else {
                for m in models {
                    println!("{}  {:<24} {} weights", m.id, m.record.name, m.weights);
                }
            }
            Ok(())
        }
        ZkCommand::Attestations { address, q } => {
            let address: Address = address.parse()?;
            let a = NodeClient::new(&q.node).zk_attestations(&address)?;
            if q.json {
                println!("{}", serde_json::to_string_pretty(&a)?);
            } else {
                println!("next attestation number {}", a.next_seq);
                for e in a.attestations {
                    let c = &e.attestation.claim;
                    println!(
                        "{}  output 0 {} {}  at height {}{}",
                        e.model,
                        if c.below { "<" } else { "≥" },
                        c.threshold,
                        e.attestation.height,
                        e.attestation
                            .certifier
                            .map_or(String::new(), |c| format!("  certified by {c}"))
                    );
                }
            }
            Ok(())
        }
    }
}
