//! A feed per account: what the index holds, ranked for one account by a profile of its
//! on-chain activity (what it paid for, staked on, transacted with, audited) and its explicit
//! follows and likes, with recency decay and diversity; every item says why it is there.
//!
//! The profile: the documents about the account (its transactions, jobs, neurons…) give the
//! accounts it dealt with, the subnets it took part in, and a vector, the recency-weighted mean
//! of those documents' vectors and of the ones it liked. Candidates come from each signal (the
//! nearest documents to the vector, the newest about each followed or frequent counterparty,
//! subnet and topic); a candidate's score is the sum of its signals' weights times a decay
//! with its age. Items are then picked greedily, each pick lowering the score of the rest of
//! its group (same kind and subject) and of near duplicates.
//!
//! Follows and likes are off-chain preferences, set only by the account's key: a signed
//! [`PrefsUpdate`] with a nonce above the last one (no replays).

use crate::doc::normalize_key;
use crate::{Doc, Error, Filters, Kind, Query, SearchIndex};
use agora_types::{PublicKey, Signature};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Most items of a feed.
pub const MAX_FEED: usize = 50;
/// Most follows (accounts, subnets, topics) and likes.
pub const MAX_FOLLOWS: usize = 32;
/// Most likes kept (the newest).
pub const MAX_LIKES: usize = 64;
/// Accounts whose preferences a node keeps, at most.
pub const MAX_PREFS_ACCOUNTS: usize = 100_000;
/// Longest topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 100;
/// Documents about the account read for its profile.
const ACTIVITY: usize = 200;
/// Subnets of its activity that count as followed.
const ACTIVE_SUBNETS: usize = 8;
/// Counterparties that count as followed.
const COUNTERPARTIES: usize = 5;
/// Least cosine similarity to the profile for an item to count as like the activity.
const MIN_SIMILARITY: f32 = 0.3;
/// Half-life of an item's score, in milliseconds (three days).
const HALF_LIFE_MS: f64 = 3.0 * 86_400_000.0;
/// What the decay never goes under (an old article can still be the best match).
const DECAY_FLOOR: f64 = 0.05;
/// Factor of an item with no time (an undated article).
const UNDATED: f64 = 0.3;
/// Each earlier pick of the same group multiplies an item's score by this.
const GROUP_PENALTY: f64 = 0.5;
/// Cosine similarity above which two items are near duplicates.
const NEAR_DUPLICATE: f32 = 0.95;
/// The domain of a preferences signature.
const PREFS_DOMAIN: &[u8] = b"agora/feed-prefs/v1";
const PREFS_MARK: &str = "prefs/";
/// How many accounts keep preferences (a u64, little-endian), written with each new one.
pub const PREFS_COUNT_MARK: &str = "count/prefs";

/// An account's explicit preferences.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prefs {
    /// Accounts followed.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Subnets followed.
    #[serde(default)]
    pub subnets: Vec<u16>,
    /// Topics followed (words searched).
    #[serde(default)]
    pub topics: Vec<String>,
    /// Documents liked (their ids).
    #[serde(default)]
    pub likes: Vec<String>,
}

impl Prefs {
    /// Refuses what is over the bounds or malformed.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |why: String| Err(Error::BadPrefs(why));
        if self.accounts.len() > MAX_FOLLOWS
            || self.subnets.len() > MAX_FOLLOWS
            || self.topics.len() > MAX_FOLLOWS
        {
            return bad(format!(
                "at most {MAX_FOLLOWS} accounts, subnets and topics each"
            ));
        }
        if self.likes.len() > MAX_LIKES {
            return bad(format!("at most {MAX_LIKES} likes"));
        }
        for a in &self.accounts {
            if a.parse::<agora_types::Address>().is_err() {
                return bad(format!("{a:?} is not an address"));
            }
        }
        for t in &self.topics {
            let n = t.trim().chars().count();
            if n == 0 || n > MAX_TOPIC_CHARS {
                return bad(format!("a topic has 1 to {MAX_TOPIC_CHARS} characters"));
            }
        }
        for l in &self.likes {
            if l.is_empty() || l.len() > crate::doc::MAX_ID {
                return bad("a like is a document's id".into());
            }
        }
        Ok(())
    }
}

/// A change of an account's preferences, signed by its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefsUpdate {
    /// The account.
    pub address: String,
    /// Above the last update's.
    pub nonce: u64,
    /// The whole new preferences.
    pub prefs: Prefs,
    /// The account's public key.
    pub public_key: PublicKey,
    /// Over [`PrefsUpdate::sign_bytes`].
    pub signature: Signature,
}

impl PrefsUpdate {
    /// What the key signs: the domain, the chain, the account, the nonce and the preferences.
    pub fn sign_bytes(chain_id: &str, address: &str, nonce: u64, prefs: &Prefs) -> Vec<u8> {
        let mut out = PREFS_DOMAIN.to_vec();
        for part in [chain_id.as_bytes(), address.as_bytes()] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&nonce.to_le_bytes());
        out.extend_from_slice(&serde_json::to_vec(prefs).unwrap_or_default());
        out
    }

    /// A signed update.
    pub fn sign(
        chain_id: &str,
        key: &agora_types::Keypair,
        nonce: u64,
        prefs: Prefs,
    ) -> PrefsUpdate {
        let address = key.address().to_string();
        let signature = key.sign(&Self::sign_bytes(chain_id, &address, nonce, &prefs));
        PrefsUpdate {
            address,
            nonce,
            prefs,
            public_key: key.public(),
            signature,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    nonce: u64,
    prefs: Prefs,
}

/// An account's preferences and the nonce of their last update.
pub fn prefs(index: &SearchIndex, address: &str) -> Result<(Prefs, u64), Error> {
    let key = format!("{PREFS_MARK}{}", normalize_key(address));
    Ok(match index.mark(&key)? {
        Some(bytes) => {
            let s: Stored = serde_json::from_slice(&bytes)?;
            (s.prefs, s.nonce)
        }
        None => (Prefs::default(), 0),
    })
}

/// Checks and stores a signed update of `chain_id`'s account.
pub fn set_prefs(index: &SearchIndex, chain_id: &str, update: &PrefsUpdate) -> Result<(), Error> {
    let address: agora_types::Address = update
        .address
        .parse()
        .map_err(|_| Error::BadPrefs(format!("{:?} is not an address", update.address)))?;
    if update.public_key.address() != address {
        return Err(Error::BadPrefs(
            "the public key is not the account's".into(),
        ));
    }
    let bytes = PrefsUpdate::sign_bytes(chain_id, &update.address, update.nonce, &update.prefs);
    update
        .public_key
        .verify(&bytes, &update.signature)
        .map_err(|_| Error::BadPrefs("the signature does not verify".into()))?;
    update.prefs.check()?;
    // The nonce is checked and the update written as one step: an old update racing a newer
    // one cannot land last.
    static ONE_AT_A_TIME: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock();
    let (_, last) = prefs(index, &update.address)?;
    // A new account's first preferences, on a node that keeps its most: refused (each account
    // must exist on chain, so filling this costs accounts; the node still serves feeds).
    let counted = index
        .mark(PREFS_COUNT_MARK)?
        .and_then(|b| Some(u64::from_le_bytes(b.get(..8)?.try_into().ok()?)));
    // A node of before the count: the accounts it keeps, counted once (and written below).
    let kept = match counted {
        Some(n) => n,
        None => index.marks(PREFS_MARK, MAX_PREFS_ACCOUNTS + 1)?.len() as u64,
    };
    if last == 0 && kept >= MAX_PREFS_ACCOUNTS as u64 {
        return Err(Error::BadPrefs(format!(
            "this node keeps the preferences of {MAX_PREFS_ACCOUNTS} accounts at most, and is full"
        )));
    }
    if update.nonce <= last {
        return Err(Error::BadPrefs(format!(
            "nonce {} is not above the last update's {last} (a replay?)",
            update.nonce
        )));
    }
    let stored = Stored {
        nonce: update.nonce,
        prefs: update.prefs.clone(),
    };
    let mut marks = vec![(
        format!("{PREFS_MARK}{}", normalize_key(&update.address)),
        serde_json::to_vec(&stored)?,
    )];
    if last == 0 || counted.is_none() {
        let now = kept + u64::from(last == 0);
        marks.push((PREFS_COUNT_MARK.into(), now.to_le_bytes().to_vec()));
    }
    index.apply(crate::Batch {
        marks,
        ..crate::Batch::default()
    })?;
    Ok(())
}

/// One item of a feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedItem {
    pub id: String,
    pub kind: Kind,
    pub title: String,
    /// The start of its body (plain text).
    pub summary: String,
    pub url: Option<String>,
    pub time_ms: i64,
    pub score: f64,
    /// Why it is there, most weighty first.
    pub reasons: Vec<String>,
}

/// A feed, and what its profile was built from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Feed {
    pub address: String,
    /// Documents about the account that the profile read.
    pub activity: usize,
    /// The accounts, subnets and topics it follows, explicit or from its activity.
    pub following: Vec<String>,
    pub items: Vec<FeedItem>,
}

struct Candidate {
    doc: Doc,
    weight: f64,
    reasons: Vec<(f64, String)>,
}

fn short(s: &str) -> String {
    if s.chars().count() <= 16 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(14).collect::<String>())
    }
}

fn decay(time_ms: i64, now_ms: i64) -> f64 {
    if time_ms <= 0 {
        return UNDATED;
    }
    let age = (now_ms - time_ms).max(0) as f64;
    (0.5f64).powf(age / HALF_LIFE_MS).max(DECAY_FLOOR)
}

/// The group an item counts in for diversity: its kind and subject.
fn group(d: &Doc) -> String {
    match (d.subnet, d.addresses.first()) {
        (Some(n), _) => format!("{}/subnet:{n}", d.kind),
        (None, Some(a)) if d.kind != Kind::Article => format!("{}/{a}", d.kind),
        _ => match d.id.split_once('/') {
            // An article's source.
            Some((source, _)) => source.to_string(),
            None => d.kind.to_string(),
        },
    }
}

fn normalize(v: &mut [f32]) -> bool {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !n.is_finite() || n <= f32::EPSILON {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= n);
    true
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The feed of `address` at `now_ms` (the chain's time), at most `limit` items.
pub fn feed(index: &SearchIndex, address: &str, now_ms: i64, limit: usize) -> Result<Feed, Error> {
    let me = normalize_key(address.trim());
    if me.parse::<agora_types::Address>().is_err() {
        return Err(Error::BadPrefs(format!("{address:?} is not an address")));
    }
    let limit = limit.clamp(1, MAX_FEED);
    let (prefs, _) = prefs(index, &me)?;

    // The account's activity: what the chain says it did.
    let activity = index.recent(
        &Filters {
            address: Some(me.clone()),
            ..Filters::default()
        },
        ACTIVITY,
    )?;
    let seen: BTreeSet<String> = activity
        .iter()
        .map(|d| d.id.clone())
        .chain(prefs.likes.iter().cloned())
        .collect();
    let mut counterparties: BTreeMap<String, usize> = BTreeMap::new();
    let mut active: BTreeMap<u16, usize> = BTreeMap::new();
    for d in &activity {
        for a in &d.addresses {
            if *a != me {
                *counterparties.entry(a.clone()).or_default() += 1;
            }
        }
        if let Some(n) = d.subnet {
            *active.entry(n).or_default() += 1;
        }
    }
    // The busiest few of its activity's subnets, then those it follows.
    let mut busiest: Vec<(u16, usize)> = active.into_iter().collect();
    busiest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut subnets: BTreeMap<u16, &'static str> = busiest
        .into_iter()
        .take(ACTIVE_SUBNETS)
        .map(|(n, _)| (n, "where you are active"))
        .collect();
    for n in &prefs.subnets {
        subnets.insert(*n, "which you follow");
    }
    let mut frequent: Vec<(String, usize)> = counterparties
        .into_iter()
        .filter(|(a, _)| !prefs.accounts.contains(a))
        .collect();
    frequent.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    frequent.truncate(COUNTERPARTIES);

    // The profile's vector: its activity (newer counts more) and its likes (twice).
    let mut anchors: Vec<(String, Vec<f32>)> = Vec::new();
    let mut profile: Option<Vec<f32>> = None;
    let mut add = |id: &str, title: &str, w: f32| -> Result<(), Error> {
        if let Some(v) = index.vector(id)? {
            let p = profile.get_or_insert_with(|| vec![0.0; v.len()]);
            if p.len() == v.len() {
                p.iter_mut().zip(&v).for_each(|(p, x)| *p += w * x);
                anchors.push((title.to_string(), v));
            }
        }
        Ok(())
    };
    for d in &activity {
        if d.kind == Kind::Account {
            continue; // its own account says nothing of its interests
        }
        add(&d.id, &d.title, decay(d.time_ms, now_ms) as f32)?;
    }
    for id in &prefs.likes {
        if let Some(d) = index.get(id)? {
            add(&d.id, &d.title, 2.0)?;
        }
    }
    let profile = profile
        .filter(|p| !p.is_empty())
        .and_then(|mut p| normalize(&mut p).then_some(p));

    let mut candidates: BTreeMap<String, Candidate> = BTreeMap::new();
    let own = format!("account:{me}");
    let offer =
        |candidates: &mut BTreeMap<String, Candidate>, doc: Doc, weight: f64, reason: String| {
            if seen.contains(&doc.id) || doc.id == own {
                return;
            }
            let c = candidates.entry(doc.id.clone()).or_insert(Candidate {
                doc,
                weight: 0.0,
                reasons: Vec::new(),
            });
            c.weight += weight;
            if !c.reasons.iter().any(|(_, r)| *r == reason) {
                c.reasons.push((weight, reason));
            }
        };
    if let Some(p) = &profile {
        for (id, sim) in index.nearest(p, &Filters::default(), 60)? {
            let Some(doc) = index.get(&id)? else { continue };
            let v = index.vector(&id)?;
            let closest = v.and_then(|v| {
                anchors
                    .iter()
                    .map(|(t, a)| (cosine(&v, a), t))
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, t)| t.clone())
            });
            let reason = match closest {
                Some(t) => format!("like \u{201c}{t}\u{201d} in your activity"),
                None => "close to your activity".into(),
            };
            if sim >= MIN_SIMILARITY {
                offer(&mut candidates, doc, f64::from(sim), reason);
            }
        }
    }
    for a in &prefs.accounts {
        let a = normalize_key(a);
        for doc in index.recent(
            &Filters {
                address: Some(a.clone()),
                ..Filters::default()
            },
            10,
        )? {
            offer(
                &mut candidates,
                doc,
                0.8,
                format!("about {}, whom you follow", short(&a)),
            );
        }
    }
    for (a, n) in &frequent {
        for doc in index.recent(
            &Filters {
                address: Some(a.clone()),
                ..Filters::default()
            },
            5,
        )? {
            offer(
                &mut candidates,
                doc,
                0.5,
                format!(
                    "about {}, which appears in {n} of your transactions and jobs",
                    short(a)
                ),
            );
        }
    }
    for (n, why) in &subnets {
        for doc in index.recent(
            &Filters {
                subnet: Some(*n),
                ..Filters::default()
            },
            10,
        )? {
            offer(&mut candidates, doc, 0.6, format!("in subnet {n}, {why}"));
        }
    }
    for t in &prefs.topics {
        let hits = index.search(&Query::new(t.as_str()).limit(10))?;
        // Only what its words found: meaning alone always finds something.
        for (rank, hit) in hits
            .into_iter()
            .filter(|h| h.bm25_rank.is_some())
            .enumerate()
        {
            if let Some(doc) = index.get(&hit.id)? {
                offer(
                    &mut candidates,
                    doc,
                    0.9 / (1.0 + rank as f64).sqrt(),
                    format!("matches your topic \u{201c}{t}\u{201d}"),
                );
            }
        }
    }
    if candidates.is_empty() {
        // Nothing known of the account: what is new on the network.
        for doc in index.recent(&Filters::default(), 3 * limit)? {
            offer(&mut candidates, doc, 0.2, "new on the network".into());
        }
    }

    // Recency, then a greedy pick for diversity.
    let mut pool: Vec<(f64, Candidate, Option<Vec<f32>>)> = Vec::new();
    for (_, c) in candidates {
        let v = index.vector(&c.doc.id)?;
        pool.push((c.weight * decay(c.doc.time_ms, now_ms), c, v));
    }
    let mut picked: Vec<FeedItem> = Vec::new();
    let mut picked_vectors: Vec<Vec<f32>> = Vec::new();
    let mut groups: BTreeMap<String, i32> = BTreeMap::new();
    while picked.len() < limit && !pool.is_empty() {
        let adjusted = |(s, c, v): &(f64, Candidate, Option<Vec<f32>>)| {
            let mut s = *s * GROUP_PENALTY.powi(groups.get(&group(&c.doc)).copied().unwrap_or(0));
            if let Some(v) = v
                && picked_vectors.iter().any(|p| cosine(p, v) > NEAR_DUPLICATE)
            {
                s *= 0.1;
            }
            s
        };
        let Some(best) = (0..pool.len()).max_by(|&a, &b| {
            adjusted(&pool[a])
                .total_cmp(&adjusted(&pool[b]))
                .then_with(|| pool[b].1.doc.id.cmp(&pool[a].1.doc.id))
        }) else {
            break;
        };
        let score = adjusted(&pool[best]);
        let (_, mut c, v) = pool.swap_remove(best);
        *groups.entry(group(&c.doc)).or_default() += 1;
        if let Some(v) = v {
            picked_vectors.push(v);
        }
        c.reasons
            .sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut summary = c.doc.body.clone();
        crate::doc::cut(&mut summary, 240);
        picked.push(FeedItem {
            id: c.doc.id,
            kind: c.doc.kind,
            title: c.doc.title,
            summary,
            url: c.doc.url,
            time_ms: c.doc.time_ms,
            score,
            reasons: c.reasons.into_iter().map(|(_, r)| r).collect(),
        });
    }
    let mut following: Vec<String> = prefs
        .accounts
        .iter()
        .map(|a| format!("account {a}"))
        .collect();
    following.extend(
        frequent
            .iter()
            .map(|(a, _)| format!("account {a} (from your activity)")),
    );
    following.extend(subnets.iter().map(|(n, why)| format!("subnet {n} ({why})")));
    following.extend(
        prefs
            .topics
            .iter()
            .map(|t| format!("topic \u{201c}{t}\u{201d}")),
    );
    Ok(Feed {
        address: me,
        activity: activity.len(),
        following,
        items: picked,
    })
}
