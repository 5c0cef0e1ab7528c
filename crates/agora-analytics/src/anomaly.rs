//! Anomaly detection on transfer graphs and providers' records, each finding with its
//! evidence (transaction hashes, amounts, timings) in words a person can check:
//!
//! - **Wash trading**: cycles of transfers (A → B → A, A → B → C → A, up to four hops) of
//!   near-equal amounts within a short window, each hop after the one before.
//! - **Sybil clusters**: one account funds many new accounts (their first incoming transfer),
//!   and many of those then act in step — their first transfers within a short window of each
//!   other, often to one destination.
//! - **Provider drift**: a provider whose recent jobs fail (rejected, or judged faulty by a
//!   verifier) far more often than its own history says they should (a binomial z-score).
//!
//! Every scan is bounded (a budget of steps for the cycle search, caps on findings) and
//! deterministic: inputs are ordered by height, and every map iterates in key order.

use crate::{Error, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One transfer of a fungible amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// Its transaction's hash.
    pub tx: String,
    /// Its block.
    pub height: u64,
    /// Its block's time (Unix ms).
    pub time_ms: i64,
    /// The payer.
    pub from: String,
    /// The payee.
    pub to: String,
    /// Base units.
    pub amount: u128,
}

/// One job's outcome for its provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobOutcome {
    /// The provider.
    pub provider: String,
    /// The block it settled (or was rejected) in.
    pub height: u64,
    /// The job.
    pub job_id: String,
    /// Rejected, or judged faulty by a verifier.
    pub failed: bool,
}

/// What was found, and why.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    /// `wash_trading`, `sybil_cluster` or `provider_drift`.
    pub kind: &'static str,
    /// The accounts involved (the first is the one the finding is about).
    pub accounts: Vec<String>,
    /// The transactions (or jobs, for drift) that show it.
    pub evidence_ids: Vec<String>,
    /// The blocks it spans.
    pub from_height: u64,
    /// The blocks it spans.
    pub to_height: u64,
    /// How strong it is (kind-specific: cycle hops, cluster size, z-score).
    pub score: f64,
    /// The evidence in words.
    pub evidence: String,
}

/// Most findings of each kind.
pub const MAX_FINDINGS: usize = 1_000;

/// The queries that feed the detectors, over a node's tables (`{from}` and `{to}` heights).
pub const TRANSFERS_SQL: &str = "SELECT tx_hash AS tx, height, CAST(time AS BIGINT) AS time_ms, \"from\", \"to\", CAST(amount AS VARCHAR) AS amount FROM transfers WHERE height BETWEEN {from} AND {to} AND tx_hash IS NOT NULL ORDER BY height";
/// Over the tables of `agora ingest evm` (`{token}`: one ERC-20's address; amounts of
/// different tokens are not comparable).
pub const EVM_TRANSFERS_SQL: &str = "SELECT tx_hash AS tx, block_number AS height, CAST(block_time AS BIGINT) AS time_ms, \"from\", \"to\", CAST(value AS VARCHAR) AS amount FROM evm_token_transfers WHERE standard = 'erc20' AND token = '{token}' AND value IS NOT NULL AND block_number BETWEEN {from} AND {to} ORDER BY block_number, log_index";
/// Each job, failed when rejected or when a verifier found a fault.
pub const JOBS_SQL: &str = "SELECT j.provider, j.height, j.job_id, (j.status <> 'settled' OR coalesce(bool_or(v.verdict <> 'pass'), false)) AS failed FROM jobs j LEFT JOIN verdicts v ON v.job_id = j.job_id WHERE j.height BETWEEN {from} AND {to} GROUP BY j.provider, j.height, j.job_id, j.status ORDER BY j.height, j.job_id";

fn field<'a>(row: &'a Value, name: &str) -> Result<&'a Value> {
    row.get(name)
        .filter(|v| !v.is_null())
        .ok_or_else(|| Error::Plan(format!("the rows need a `{name}` column: {row}")))
}

fn text(row: &Value, name: &str) -> Result<String> {
    field(row, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Plan(format!("`{name}` must be text: {row}")))
}

fn int(row: &Value, name: &str) -> Result<i64> {
    field(row, name)?
        .as_i64()
        .ok_or_else(|| Error::Plan(format!("`{name}` must be an integer: {row}")))
}

impl Transfer {
    /// From a JSON row with `tx`, `height`, `time_ms`, `from`, `to` and `amount` (a decimal
    /// string).
    pub fn from_row(row: &Value) -> Result<Self> {
        let amount = text(row, "amount")?;
        Ok(Self {
            tx: text(row, "tx")?,
            height: u64::try_from(int(row, "height")?)
                .map_err(|_| Error::Plan(format!("a negative height: {row}")))?,
            time_ms: int(row, "time_ms")?,
            from: text(row, "from")?,
            to: text(row, "to")?,
            amount: amount
                .parse()
                .map_err(|_| Error::Plan(format!("`amount` must be a whole number: {amount}")))?,
        })
    }
}

impl JobOutcome {
    /// From a JSON row with `provider`, `height`, `job_id` and `failed`.
    pub fn from_row(row: &Value) -> Result<Self> {
        Ok(Self {
            provider: text(row, "provider")?,
            height: u64::try_from(int(row, "height")?)
                .map_err(|_| Error::Plan(format!("a negative height: {row}")))?,
            job_id: text(row, "job_id")?,
            failed: field(row, "failed")?
                .as_bool()
                .ok_or_else(|| Error::Plan(format!("`failed` must be true or false: {row}")))?,
        })
    }
}

/// How wash trading is looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WashOptions {
    /// The longest a cycle may take, first transfer to last.
    pub window_ms: i64,
    /// How far a hop's amount may be from the first's, in basis points of it.
    pub tolerance_bp: u32,
    /// Most transfers in a cycle (2 to 4).
    pub max_hops: usize,
    /// Smaller transfers are ignored.
    pub min_amount: u128,
}

impl Default for WashOptions {
    fn default() -> Self {
        Self {
            window_ms: 10 * 60 * 1000,
            tolerance_bp: 500,
            max_hops: 4,
            min_amount: 1,
        }
    }
}

/// Steps the cycle search may take in all (each a transfer looked at)…
const WASH_BUDGET: usize = 5_000_000;
/// …and from one starting transfer, so that one busy account cannot use up the whole budget.
const WASH_BUDGET_PER_START: usize = 20_000;

fn near(a: u128, b: u128, tolerance_bp: u32) -> bool {
    // diff ≤ a × tol / 10,000, without an intermediate that can saturate.
    let tol = u128::from(tolerance_bp.min(10_000));
    let allowed = a / 10_000 * tol + (a % 10_000) * tol / 10_000;
    a.abs_diff(b) <= allowed
}

/// Cycles of near-equal transfers within a window (see the module's docs). `transfers` in
/// chain order.
pub fn wash_trading(transfers: &[Transfer], options: WashOptions) -> Vec<Finding> {
    let max_hops = options.max_hops.clamp(2, 4);
    // Each sender's transfers, in chain order (indices into `transfers`).
    let mut by_sender: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, t) in transfers.iter().enumerate() {
        if t.amount >= options.min_amount && t.from != t.to {
            by_sender.entry(t.from.as_str()).or_default().push(i);
        }
    }
    let mut findings = Vec::new();
    let mut budget = WASH_BUDGET;
    for (i, first) in transfers.iter().enumerate() {
        if findings.len() >= MAX_FINDINGS || budget == 0 {
            break;
        }
        if first.amount < options.min_amount || first.from == first.to {
            continue;
        }
        let deadline = first.time_ms.saturating_add(options.window_ms.max(0));
        let mut own = WASH_BUDGET_PER_START;
        // Depth-first over paths of transfer indices. The first cycle that closes is this
        // transfer's finding: one per start, so a pair paying each other back and forth k
        // times makes k findings, not k².
        let mut stack: Vec<Vec<usize>> = vec![vec![i]];
        let mut closed = false;
        while let Some(path) = stack.pop() {
            if closed {
                break;
            }
            let last = &transfers[*path.last().expect("a path has a transfer")];
            let Some(next) = by_sender.get(last.to.as_str()) else {
                continue;
            };
            let after = path.last().copied().unwrap_or(i);
            let start = next.partition_point(|j| *j <= after);
            for &j in &next[start..] {
                if budget == 0 || own == 0 {
                    break;
                }
                budget -= 1;
                own -= 1;
                let t = &transfers[j];
                if t.time_ms > deadline {
                    break;
                }
                if !near(first.amount, t.amount, options.tolerance_bp) {
                    continue;
                }
                if t.to == first.from {
                    let mut cycle = path.clone();
                    cycle.push(j);
                    findings.push(wash_finding(transfers, &cycle));
                    closed = true;
                    break;
                }
                let visited = path.iter().any(|k| transfers[*k].from == t.to);
                if path.len() + 1 < max_hops && !visited {
                    let mut longer = path.clone();
                    longer.push(j);
                    stack.push(longer);
                }
            }
        }
    }
    findings.truncate(MAX_FINDINGS);
    findings
}

fn wash_finding(transfers: &[Transfer], cycle: &[usize]) -> Finding {
    let hops: Vec<&Transfer> = cycle.iter().map(|i| &transfers[*i]).collect();
    let first = hops[0];
    let last = hops[hops.len() - 1];
    let mut route: Vec<String> = hops.iter().map(|t| t.from.clone()).collect();
    route.push(first.from.clone());
    let amounts: Vec<String> = hops.iter().map(|t| t.amount.to_string()).collect();
    let seconds = (last.time_ms - first.time_ms) as f64 / 1000.0;
    Finding {
        kind: "wash_trading",
        accounts: hops.iter().map(|t| t.from.clone()).collect(),
        evidence_ids: hops.iter().map(|t| t.tx.clone()).collect(),
        from_height: first.height,
        to_height: last.height,
        score: hops.len() as f64,
        evidence: format!(
            "{}: {} transfers of {} (base units) went round in {seconds:.1} s, blocks {} to {}; transactions {}",
            route.join(" → "),
            hops.len(),
            amounts.join(", "),
            first.height,
            last.height,
            hops.iter()
                .map(|t| t.tx.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// How sybil clusters are looked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SybilOptions {
    /// Fewest accounts acting in step to report a cluster.
    pub min_cluster: usize,
    /// How close their first transfers must be.
    pub sync_window_ms: i64,
}

impl Default for SybilOptions {
    fn default() -> Self {
        Self {
            min_cluster: 5,
            sync_window_ms: 60 * 1000,
        }
    }
}

/// Funders whose new accounts act in step (see the module's docs). `transfers` in chain order.
pub fn sybil_clusters(transfers: &[Transfer], options: SybilOptions) -> Vec<Finding> {
    let min = options.min_cluster.max(2);
    // Each account's first incoming and first outgoing transfer.
    let mut first_in: BTreeMap<&str, usize> = BTreeMap::new();
    let mut first_out: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, t) in transfers.iter().enumerate() {
        first_in.entry(t.to.as_str()).or_insert(i);
        first_out.entry(t.from.as_str()).or_insert(i);
    }
    // Accounts funded by each funder: their first transfer in came from it, and they had sent
    // nothing before (new accounts).
    let mut funded: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (account, i) in &first_in {
        let new = first_out.get(account).is_none_or(|o| o > i);
        if new {
            funded
                .entry(transfers[*i].from.as_str())
                .or_default()
                .push(account);
        }
    }
    let mut findings = Vec::new();
    for (funder, members) in funded {
        if members.len() < min || findings.len() >= MAX_FINDINGS {
            continue;
        }
        // Members' first transfers out, by time.
        let mut acts: Vec<usize> = members
            .iter()
            .filter_map(|m| first_out.get(m).copied())
            .collect();
        acts.sort_by_key(|i| (transfers[*i].time_ms, *i));
        // The largest group within the window (two pointers).
        let (mut best, mut lo) = ((0usize, 0usize), 0usize);
        for hi in 0..acts.len() {
            while lo < hi
                && transfers[acts[hi]]
                    .time_ms
                    .saturating_sub(transfers[acts[lo]].time_ms)
                    > options.sync_window_ms.max(0)
            {
                lo += 1;
            }
            if hi + 1 - lo > best.1 - best.0 {
                best = (lo, hi + 1);
            }
        }
        let group = &acts[best.0..best.1];
        if group.len() < min {
            continue;
        }
        let mut destinations: BTreeMap<&str, usize> = BTreeMap::new();
        for i in group {
            *destinations.entry(transfers[*i].to.as_str()).or_default() += 1;
        }
        let (common, shared) = destinations
            .iter()
            .max_by_key(|(d, n)| (**n, std::cmp::Reverse(**d)))
            .map(|(d, n)| (*d, *n))
            .unwrap_or(("", 0));
        let fundings: Vec<&Transfer> = group
            .iter()
            .map(|i| &transfers[first_in[transfers[*i].from.as_str()]])
            .collect();
        let acts: Vec<&Transfer> = group.iter().map(|i| &transfers[*i]).collect();
        let span = (acts[acts.len() - 1].time_ms - acts[0].time_ms) as f64 / 1000.0;
        let to_one = if shared >= 2 {
            format!(", {shared} of them to {common}")
        } else {
            String::new()
        };
        let from_height = fundings.iter().map(|t| t.height).min().unwrap_or(0);
        let to_height = acts.iter().map(|t| t.height).max().unwrap_or(0);
        findings.push(Finding {
            kind: "sybil_cluster",
            accounts: std::iter::once(funder.to_string())
                .chain(acts.iter().map(|t| t.from.clone()))
                .collect(),
            evidence_ids: fundings
                .iter()
                .chain(&acts)
                .map(|t| t.tx.clone())
                .collect(),
            from_height,
            to_height,
            score: group.len() as f64,
            evidence: format!(
                "{funder} funded {} new accounts (first transfers in: {}); {} of them made their first transfer within {span:.1} s of each other, blocks {} to {}{to_one} (transactions {})",
                members.len(),
                fundings.iter().map(|t| t.tx.as_str()).collect::<Vec<_>>().join(", "),
                group.len(),
                acts[0].height,
                acts[acts.len() - 1].height,
                acts.iter().map(|t| t.tx.as_str()).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    findings
}

/// How provider drift is looked for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DriftOptions {
    /// A provider's most recent jobs, compared with the ones before.
    pub recent: usize,
    /// Fewest earlier jobs to call them a history.
    pub min_history: usize,
    /// Least rise of the failure rate to report (0.1: ten points).
    pub min_rise: f64,
    /// Least z-score to report.
    pub z: f64,
}

impl Default for DriftOptions {
    fn default() -> Self {
        Self {
            recent: 20,
            min_history: 30,
            min_rise: 0.1,
            z: 3.0,
        }
    }
}

/// Providers whose recent failure rate departs from their history (see the module's docs).
/// `jobs` in chain order.
pub fn provider_drift(jobs: &[JobOutcome], options: DriftOptions) -> Vec<Finding> {
    let mut by_provider: BTreeMap<&str, Vec<&JobOutcome>> = BTreeMap::new();
    for j in jobs {
        by_provider.entry(j.provider.as_str()).or_default().push(j);
    }
    let recent_n = options.recent.max(1);
    let mut findings = Vec::new();
    for (provider, list) in by_provider {
        if list.len() < recent_n + options.min_history.max(1) {
            continue;
        }
        let (history, recent) = list.split_at(list.len() - recent_n);
        let failed_before = history.iter().filter(|j| j.failed).count();
        let failed_now: Vec<&&JobOutcome> = recent.iter().filter(|j| j.failed).collect();
        let before = failed_before as f64 / history.len() as f64;
        let now = failed_now.len() as f64 / recent.len() as f64;
        // The history's rate, kept off 0 so one failure after a clean record is not infinite.
        let p = before.max(0.5 / history.len() as f64).min(0.99);
        let n = recent.len() as f64;
        let z = (failed_now.len() as f64 - n * p) / (n * p * (1.0 - p)).sqrt();
        if z < options.z || now - before < options.min_rise {
            continue;
        }
        let ids: Vec<String> = failed_now.iter().map(|j| j.job_id.clone()).collect();
        findings.push(Finding {
            kind: "provider_drift",
            accounts: vec![provider.to_string()],
            evidence_ids: ids.clone(),
            from_height: recent[0].height,
            to_height: recent[recent.len() - 1].height,
            score: z,
            evidence: format!(
                "{provider}: {} of its last {} jobs failed ({:.0} %, blocks {} to {}) against {failed_before} of its {} jobs before ({:.1} %); z = {z:.1}; failed jobs: {}",
                failed_now.len(),
                recent.len(),
                now * 100.0,
                recent[0].height,
                recent[recent.len() - 1].height,
                history.len(),
                before * 100.0,
                ids.join(", ")
            ),
        });
    }
    findings.truncate(MAX_FINDINGS);
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream of ordinary transfers among `accounts` accounts: random pairs, random amounts,
    /// one every 2 s (a deterministic generator).
    fn noise(n: usize, accounts: u64, seed: u64) -> Vec<Transfer> {
        let mut s = seed;
        let mut next = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s >> 33
        };
        (0..n)
            .map(|i| {
                let from = next() % accounts;
                let to = (from + 1 + next() % (accounts - 1)) % accounts;
                Transfer {
                    tx: format!("n{i}"),
                    height: i as u64 / 4,
                    time_ms: i as i64 * 2000,
                    from: format!("acct{from}"),
                    to: format!("acct{to}"),
                    amount: u128::from(1 + next() % 1_000_000),
                }
            })
            .collect()
    }

    fn at(t: &mut Vec<Transfer>, tx: &str, time_ms: i64, from: &str, to: &str, amount: u128) {
        t.push(Transfer {
            tx: tx.into(),
            height: (time_ms / 8000) as u64,
            time_ms,
            from: from.into(),
            to: to.into(),
            amount,
        });
    }

    fn ordered(mut t: Vec<Transfer>) -> Vec<Transfer> {
        t.sort_by_key(|t| t.time_ms);
        t
    }

    #[test]
    fn planted_wash_cycles_are_found_with_their_transactions_and_noise_is_not() {
        let mut t = noise(3000, 200, 1);
        // A → B → A, and X → Y → Z → X, near-equal amounts within minutes.
        at(&mut t, "w1", 100_001, "washA", "washB", 5_000_000);
        at(&mut t, "w2", 160_001, "washB", "washA", 4_990_000);
        at(&mut t, "c1", 500_001, "cycX", "cycY", 7_000_000);
        at(&mut t, "c2", 520_001, "cycY", "cycZ", 7_010_000);
        at(&mut t, "c3", 540_001, "cycZ", "cycX", 6_980_000);
        // Not wash: the way back is far smaller, or far later.
        at(&mut t, "x1", 700_001, "honA", "honB", 5_000_000);
        at(&mut t, "x2", 710_001, "honB", "honA", 1_000_000);
        at(&mut t, "y1", 800_001, "lateA", "lateB", 5_000_000);
        at(
            &mut t,
            "y2",
            800_001 + 3_600_000,
            "lateB",
            "lateA",
            5_000_000,
        );
        let t = ordered(t);
        let found = wash_trading(&t, WashOptions::default());
        let planted: Vec<&Finding> = found
            .iter()
            .filter(|f| {
                f.accounts
                    .iter()
                    .any(|a| a.starts_with("wash") || a.starts_with("cyc"))
            })
            .collect();
        assert_eq!(planted.len(), 2, "{found:#?}");
        assert_eq!(planted[0].evidence_ids, vec!["w1", "w2"]);
        assert!(
            planted[0].evidence.contains("washA → washB → washA"),
            "{}",
            planted[0].evidence
        );
        assert!(
            planted[0].evidence.contains("5000000, 4990000"),
            "{}",
            planted[0].evidence
        );
        assert_eq!(planted[1].evidence_ids, vec!["c1", "c2", "c3"]);
        assert!(!found.iter().any(|f| {
            f.accounts
                .iter()
                .any(|a| a.starts_with("hon") || a.starts_with("late"))
        }));
        // Random traffic among 200 accounts closes few near-equal cycles in 10 minutes.
        let stray = found.len() - planted.len();
        assert!(stray <= 3, "{stray} findings in noise: {found:#?}");
    }

    #[test]
    fn a_funder_whose_new_accounts_act_in_step_is_a_sybil_cluster() {
        let mut t = noise(2000, 100, 2);
        // The farm: 8 accounts funded by one, all sending to one target within 30 s.
        for i in 0..8 {
            at(
                &mut t,
                &format!("f{i}"),
                1_000_001 + i * 1000,
                "farmer",
                &format!("bot{i}"),
                1_000,
            );
        }
        for i in 0..8 {
            at(
                &mut t,
                &format!("a{i}"),
                2_000_001 + i * 4000,
                &format!("bot{i}"),
                "target",
                900,
            );
        }
        // A faucet: 8 new accounts whose first transfers are hours apart.
        for i in 0..8 {
            at(
                &mut t,
                &format!("g{i}"),
                1_000_002 + i * 1000,
                "faucet",
                &format!("user{i}"),
                1_000,
            );
            at(
                &mut t,
                &format!("u{i}"),
                3_000_000 + i * 3_600_000,
                &format!("user{i}"),
                "shop",
                10,
            );
        }
        let t = ordered(t);
        let found = sybil_clusters(&t, SybilOptions::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(f.accounts[0], "farmer");
        assert_eq!(f.score, 8.0);
        assert!(
            f.evidence.contains("funded 8 new accounts"),
            "{}",
            f.evidence
        );
        assert!(f.evidence.contains("8 of them to target"), "{}", f.evidence);
        assert!(
            f.evidence_ids.contains(&"f3".to_string())
                && f.evidence_ids.contains(&"a7".to_string())
        );
    }

    #[test]
    fn a_provider_failing_more_than_its_history_is_flagged_and_a_steady_one_is_not() {
        let mut jobs = Vec::new();
        for h in 0..200u64 {
            // "steady" fails 5 % of the time throughout; "drifting" 2 %, then 40 % at the end.
            jobs.push(JobOutcome {
                provider: "steady".into(),
                height: h,
                job_id: format!("s{h}"),
                failed: h % 20 == 3,
            });
            let failed = if h >= 180 { h % 5 < 2 } else { h % 50 == 7 };
            jobs.push(JobOutcome {
                provider: "drifting".into(),
                height: h,
                job_id: format!("d{h}"),
                failed,
            });
        }
        let found = provider_drift(&jobs, DriftOptions::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].accounts, vec!["drifting"]);
        assert!(
            found[0].evidence.contains("8 of its last 20 jobs failed"),
            "{}",
            found[0].evidence
        );
        assert!(found[0].evidence_ids.contains(&"d180".to_string()));
        assert!(found[0].score > 3.0);
    }

    #[test]
    fn nearness_never_saturates_and_back_and_forth_pays_one_finding_per_transfer() {
        assert!(near(1_000_000, 1_049_999, 500) && !near(1_000_000, 1_050_001, 500));
        assert!(
            !near(10u128.pow(36), 1, 500),
            "huge amounts are not near everything"
        );
        assert!(near(u128::MAX, u128::MAX - 1, 1));
        let mut t = Vec::new();
        for k in 0..40 {
            let (from, to) = if k % 2 == 0 { ("p", "q") } else { ("q", "p") };
            at(&mut t, &format!("b{k}"), 1_000 + k * 1_000, from, to, 7_000);
        }
        let found = wash_trading(&t, WashOptions::default());
        // Each transfer but the last starts exactly one cycle: with the next one back.
        assert_eq!(found.len(), 39, "{}", found.len());
        assert_eq!(found[0].evidence_ids, vec!["b0", "b1"]);
        // A negative sync window finds nothing and does not panic.
        let options = SybilOptions {
            min_cluster: 2,
            sync_window_ms: -5,
        };
        assert!(sybil_clusters(&t, options).is_empty());
    }

    #[test]
    fn rows_are_read_with_clear_errors() {
        let row = serde_json::json!({"tx": "0xab", "height": 3, "time_ms": 1000, "from": "a", "to": "b", "amount": "340282366920938463463374607431768211455"});
        assert_eq!(
            Transfer::from_row(&row).expect("a transfer").amount,
            u128::MAX
        );
        let bad = serde_json::json!({"tx": "0xab", "height": 3, "time_ms": 1000, "from": "a", "to": "b", "amount": "1.5"});
        assert!(
            Transfer::from_row(&bad)
                .expect_err("not whole")
                .to_string()
                .contains("whole number")
        );
        let missing = serde_json::json!({"height": 3});
        assert!(
            Transfer::from_row(&missing)
                .expect_err("no tx")
                .to_string()
                .contains("`amount`")
        );
    }
}
