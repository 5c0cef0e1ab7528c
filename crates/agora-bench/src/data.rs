//! `agora bench data`: the data market's pre-screen and blob store. Near-duplicate detection
//! recall and precision on a generated set with known near-duplicates, submissions
//! pre-screened per second (JSON, schema, spam rules, the MiniLM embedding and the search among
//! earlier items, all included), and the blob store's write and verified-read throughput.
//!
//! The set: distinct sentences of OpenZeppelin Contracts' documentation (sentences sharing more
//! than half their words with one kept already are left out, a rule that does not use the model
//! under test) are the originals; each near-duplicate is an original changed twice, the way a
//! contributor would dodge an exact-hash check: case and punctuation, a filler phrase, two words
//! swapped, a word dropped, a synonym, a typo. Every near-duplicate is submitted after its
//! original; the originals themselves are the negatives.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use agora_data::{BlobStore, DuplicateIndex, Limits, Prescreen};
use agora_infer::models::{self, ModelCache};
use agora_search::{Embed, LocalEmbed};
use agora_types::{AGR, BountySpec, Hash};
use anyhow::{Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct DataBenchArgs {
    /// Original items (distinct sentences of the documentation).
    #[arg(long, default_value_t = 2_000)]
    originals: usize,
    /// Near-duplicates per 100 originals.
    #[arg(long, default_value_t = 50)]
    duplicates_per_100: usize,
    /// The bounty's duplicate threshold, in basis points of cosine similarity.
    #[arg(long, default_value_t = 9_400)]
    duplicate_bps: u16,
    /// OpenZeppelin Contracts' package directory (default: fetched with npm into the cache).
    #[arg(long)]
    openzeppelin: Option<PathBuf>,
    /// Embedding threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Blobs written and read in the store's measurement, per size.
    #[arg(long, default_value_t = 2_000)]
    blobs: usize,
    /// Print the near-duplicates missed and the items flagged wrongly, at the bounty's
    /// threshold.
    #[arg(long)]
    verbose: bool,
}

/// The bench's bounty: items `{"text": …, "source": …}`.
fn bounty(duplicate_bps: u16) -> BountySpec {
    BountySpec {
        description: "Sentences explaining smart-contract code".into(),
        schema: r#"{"type":"object","required":["text","source"],
            "properties":{"text":{"type":"string","minLength":20,"maxLength":2000},
                          "source":{"type":"string"}},
            "additionalProperties":false}"#
            .into(),
        reward_per_item: AGR,
        review_fee: AGR / 100,
        budget: 10_000 * AGR,
        quorum: 3,
        review_stake: AGR,
        item_bond: AGR / 10,
        deadline: 1_000,
        max_item_bytes: 4_096,
        duplicate_bps,
        royalty_bps: 0,
    }
}

/// A deterministic stream of numbers for item `i`'s choices.
fn pick(i: usize, k: u32, n: usize) -> usize {
    let h = Hash::digest(format!("bench-data/{i}/{k}").as_bytes());
    (u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes")) % n.max(1) as u64) as usize
}

fn words_of(s: &str) -> BTreeSet<String> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Distinct sentences of 8 to 40 words, none sharing more than half its words with an earlier
/// one.
fn originals(root: &std::path::Path, n: usize) -> Result<Vec<String>> {
    let docs = agora_search::corpus::solidity_docs(root, "openzeppelin")?;
    let mut kept: Vec<String> = Vec::new();
    let mut sets: Vec<BTreeSet<String>> = Vec::new();
    for d in docs {
        for raw in d.body.split(['\n', '.']) {
            let s = raw.split_whitespace().collect::<Vec<_>>().join(" ");
            let len = s.split_whitespace().count();
            if !(8..=40).contains(&len) || !s.chars().next().is_some_and(char::is_alphabetic) {
                continue;
            }
            let w = words_of(&s);
            let alike = sets.iter().any(|o| {
                let inter = o.intersection(&w).count();
                let union = o.len() + w.len() - inter;
                inter * 2 > union
            });
            if !alike {
                kept.push(format!("{s}."));
                sets.push(w);
                if kept.len() == n {
                    return Ok(kept);
                }
            }
        }
    }
    if kept.len() < n.min(200) {
        bail!(
            "only {} distinct sentences in {}",
            kept.len(),
            root.display()
        );
    }
    Ok(kept)
}

const FILLERS: [&str; 5] = [
    "Note that ",
    "Basically, ",
    "In short, ",
    "FYI: ",
    "Remember: ",
];
const SYNONYMS: [(&str, &str); 16] = [
    ("returns", "gives back"),
    ("function", "method"),
    ("contract", "smart contract"),
    ("caller", "sender"),
    ("allows", "lets"),
    ("amount", "quantity"),
    ("must", "has to"),
    ("account", "address"),
    ("token", "coin"),
    ("tokens", "coins"),
    ("can", "may"),
    ("the", "this"),
    ("is", "gets"),
    ("if", "when"),
    ("be", "get"),
    ("of", "for"),
];

/// One change of the kinds a contributor would make to dodge an exact-hash check.
fn change(s: &str, i: usize, k: u32) -> String {
    let mut words: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    match pick(i, k, 7) {
        0 => s.to_lowercase().trim_end_matches('.').to_string() + "!",
        1 => format!("{}{}", FILLERS[pick(i, k + 10, FILLERS.len())], s),
        2 if words.len() > 3 => {
            let j = 1 + pick(i, k + 20, words.len() - 2);
            words.swap(j, j + 1);
            words.join(" ")
        }
        3 if words.len() >= 10 => {
            let j = 1 + pick(i, k + 30, words.len() - 1);
            words.remove(j);
            words.join(" ")
        }
        4 => {
            let at = (0..words.len()).find(|&j| {
                SYNONYMS
                    .iter()
                    .any(|(a, _)| words[j].eq_ignore_ascii_case(a))
            });
            match at {
                Some(j) => {
                    let (_, b) = SYNONYMS
                        .iter()
                        .find(|(a, _)| words[j].eq_ignore_ascii_case(a))
                        .expect("found above");
                    words[j] = (*b).to_string();
                    words.join(" ")
                }
                None => format!("{s} Thanks."),
            }
        }
        5 => {
            let at = (0..words.len()).find(|&j| words[j].chars().count() >= 6);
            match at {
                Some(j) => {
                    let mut cs: Vec<char> = words[j].chars().collect();
                    cs.swap(2, 3);
                    words[j] = cs.into_iter().collect();
                    words.join(" ")
                }
                None => s.replace(", ", " "),
            }
        }
        _ => format!("{} (see the docs)", s.trim_end_matches('.')),
    }
}

/// The submission stream: (text, family). An original's family is its own index; a
/// near-duplicate is its original's family and comes after it.
fn stream(originals: &[String], per_100: usize) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = originals
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i))
        .collect();
    let dups = originals.len() * per_100 / 100;
    for d in 0..dups {
        let fam = pick(d, 0, originals.len());
        let once = change(&originals[fam], d, 1);
        let twice = change(&once, d, 2);
        // Somewhere after its original.
        let pos = out
            .iter()
            .position(|(_, f)| *f == fam)
            .expect("the original is in the stream");
        let at = pos + 1 + pick(d, 3, out.len() - pos);
        out.insert(at, (twice, fam));
    }
    out
}

/// The thresholds measured: 0.80 to 0.98, and the bounty's.
fn sweep(bounty: u16) -> Vec<u16> {
    let mut sweep: Vec<u16> = (80..=98).step_by(2).map(|t| t * 100).collect();
    if !sweep.contains(&bounty) {
        sweep.push(bounty);
        sweep.sort_unstable();
    }
    sweep
}

fn json_item(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"text": text, "source": "openzeppelin"}))
        .expect("a JSON value")
}

pub fn run(args: DataBenchArgs, models_dir: &std::path::Path) -> Result<()> {
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let cache = ModelCache::new(models_dir);
    let minilm = cache.ensure_reporting(&models::MINILM)?;
    let embed: Arc<dyn Embed> = Arc::new(LocalEmbed::load(&minilm, threads)?);
    let openzeppelin = match args.openzeppelin.clone() {
        Some(p) => p,
        None => crate::search::fetch_openzeppelin(&models_dir.join("..").join("corpus"))?,
    };
    let originals = originals(&openzeppelin, args.originals)?;
    let items = stream(&originals, args.duplicates_per_100);
    let spec = bounty(args.duplicate_bps);
    let screen = Prescreen::new(&spec).map_err(anyhow::Error::msg)?;
    println!(
        "agora bench data: {} submissions ({} originals from OpenZeppelin Contracts {}, {} near-duplicates), MiniLM on {threads} threads, threshold {:.2}",
        items.len(),
        originals.len(),
        crate::search::OPENZEPPELIN,
        items.len() - originals.len(),
        screen.threshold
    );

    // The pre-screen as a screener runs it: each block's submissions checked, embedded in one
    // batch, then compared with every earlier item.
    let start = Instant::now();
    let mut index = DuplicateIndex::new();
    let mut vectors_all: Vec<Vec<f32>> = Vec::with_capacity(items.len());
    let mut texts_all: Vec<String> = Vec::with_capacity(items.len());
    let mut flagged_at_bounty = 0usize;
    let mut rejected_by_rules = 0usize;
    for (b, chunk) in items.chunks(64).enumerate() {
        let mut texts = Vec::new();
        for (text, _) in chunk {
            match screen.check(&json_item(text)) {
                Ok(t) => texts.push(t),
                Err(r) => {
                    rejected_by_rules += 1;
                    if args.verbose {
                        println!("  refused by the rules ({}): {text:?}", r.detail);
                    }
                    texts.push(text.clone());
                }
            }
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = embed.embed(&refs)?;
        for (k, v) in vectors.into_iter().enumerate() {
            let i = (b * 64 + k) as u32;
            if index
                .duplicate(&v, &texts[k], i, screen.threshold)
                .is_some()
            {
                flagged_at_bounty += 1;
            }
            index.add(i, v.clone(), &texts[k]);
            vectors_all.push(v);
            texts_all.push(texts[k].clone());
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // What each threshold of the sweep finds (untimed; the bounty's own is one of them).
    let sweep = sweep(args.duplicate_bps);
    let found: Vec<Vec<Option<(u32, String)>>> = (0..items.len())
        .map(|i| {
            sweep
                .iter()
                .map(|bps| {
                    index
                        .duplicate(
                            &vectors_all[i],
                            &texts_all[i],
                            i as u32,
                            f32::from(*bps) / 10_000.0,
                        )
                        .map(|r| (r.duplicate_of.unwrap_or(u32::MAX), r.detail))
                })
                .collect()
        })
        .collect();
    println!(
        "pre-screen: {:.0} submissions/s ({} in {secs:.1} s; JSON, schema, spam rules, embedding and the search among earlier items; {rejected_by_rules} refused by the rules, {flagged_at_bounty} flagged as near-duplicates)",
        items.len() as f64 / secs,
        items.len()
    );

    println!("| threshold | flagged | recall | precision |");
    println!("| --- | --- | --- | --- |");
    let dups = items.len() - originals.len();
    for (s, bps) in sweep.iter().copied().enumerate() {
        let t = f32::from(bps) / 10_000.0;
        let (mut flagged, mut right) = (0usize, 0usize);
        // A duplicate is found when it is flagged as one of its own family's items.
        let mut first_of: std::collections::BTreeMap<usize, usize> = Default::default();
        for (i, (_, fam)) in items.iter().enumerate() {
            first_of.entry(*fam).or_insert(i);
            let Some((of, detail)) = &found[i][s] else {
                continue;
            };
            let of = *of;
            flagged += 1;
            let is_dup = first_of[fam] != i;
            if is_dup && items[of as usize].1 == *fam {
                right += 1;
            } else if args.verbose && bps == args.duplicate_bps {
                println!(
                    "  wrongly flagged ({detail}): {:?}\n    as a copy of {:?}",
                    items[i].0, items[of as usize].0
                );
            }
        }
        if args.verbose && bps == args.duplicate_bps {
            let mut seen: BTreeSet<usize> = BTreeSet::new();
            for (i, (text, fam)) in items.iter().enumerate() {
                if seen.insert(*fam) {
                    continue;
                }
                let caught = found[i][s]
                    .as_ref()
                    .is_some_and(|(of, _)| items[*of as usize].1 == *fam);
                if !caught {
                    println!("  missed: {text:?}\n    copy of {:?}", originals[*fam]);
                }
            }
        }
        let recall = right as f64 / dups.max(1) as f64;
        let precision = if flagged == 0 {
            1.0
        } else {
            right as f64 / flagged as f64
        };
        let mark = if bps == args.duplicate_bps {
            " (the bounty's)"
        } else {
            ""
        };
        println!(
            "| {:.2}{mark} | {flagged} | {recall:.3} | {precision:.3} |",
            t
        );
    }
    blob_throughput(args.blobs)?;
    Ok(())
}

/// Writes and reads back `n` blobs of 1 KiB and of 64 KiB.
fn blob_throughput(n: usize) -> Result<()> {
    println!("| blob size | blobs | write/s | write MB/s | verified read/s | read MB/s |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for size in [1024usize, 64 * 1024] {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::open(dir.path(), Limits::default())?;
        let blobs: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let seed = Hash::digest(&(i as u64).to_le_bytes());
                seed.0.iter().copied().cycle().take(size).collect()
            })
            .collect();
        let start = Instant::now();
        let mut hashes = Vec::with_capacity(n);
        for b in &blobs {
            hashes.push(store.put(b)?);
        }
        let w = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut read = 0usize;
        for h in &hashes {
            read += store.get(h)?.map_or(0, |b| b.len());
        }
        let r = start.elapsed().as_secs_f64();
        if read != n * size {
            bail!("read back {read} bytes of {}", n * size);
        }
        let mb = (n * size) as f64 / 1e6;
        println!(
            "| {} KiB | {n} | {:.0} | {:.1} | {:.0} | {:.1} |",
            size / 1024,
            n as f64 / w,
            mb / w,
            n as f64 / r,
            mb / r
        );
    }
    Ok(())
}
