//! Retrieval quality: nDCG@k and recall@k against graded relevance judgments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::index::{Filters, Mode, Query, SearchIndex};

/// A labelled query: the documents that answer it, graded 1 (related), 2 (relevant) or
/// 3 (the answer). Documents not named are not relevant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Judged {
    pub query: String,
    #[serde(default)]
    pub filters: Filters,
    pub relevant: BTreeMap<String, u8>,
}

/// Discounted cumulative gain of the first `k` of `ranked`, over the best possible.
pub fn ndcg_at(k: usize, ranked: &[String], relevant: &BTreeMap<String, u8>) -> f64 {
    let gain = |g: u8| f64::from((1u32 << g.min(8)) - 1);
    let discount = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, id)| relevant.get(id).map_or(0.0, |&g| gain(g) * discount(i)))
        .sum();
    let mut ideal: Vec<u8> = relevant.values().copied().filter(|&g| g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &g)| gain(g) * discount(i))
        .sum();
    if idcg == 0.0 { 0.0 } else { dcg / idcg }
}

/// Share of the relevant documents (grade ≥ 1) found in the first `k` of `ranked`.
pub fn recall_at(k: usize, ranked: &[String], relevant: &BTreeMap<String, u8>) -> f64 {
    let wanted = relevant.values().filter(|&&g| g > 0).count();
    if wanted == 0 {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|id| relevant.get(*id).is_some_and(|&g| g > 0))
        .count();
    found as f64 / wanted as f64
}

/// Mean scores of one ranking mode over a labelled set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub mode: String,
    pub queries: usize,
    pub ndcg_at_10: f64,
    pub recall_at_10: f64,
    /// Per query, in order: (nDCG@10, recall@10).
    pub per_query: Vec<(f64, f64)>,
}

/// Runs every labelled query in `mode` and averages nDCG@10 and recall@10.
pub fn evaluate(index: &SearchIndex, set: &[Judged], mode: Mode) -> Result<Scores, Error> {
    let mut per_query = Vec::with_capacity(set.len());
    for j in set {
        let q = Query::new(&j.query)
            .mode(mode)
            .limit(10)
            .filters(j.filters.clone());
        let ranked: Vec<String> = index.search(&q)?.into_iter().map(|h| h.id).collect();
        per_query.push((
            ndcg_at(10, &ranked, &j.relevant),
            recall_at(10, &ranked, &j.relevant),
        ));
    }
    let n = per_query.len().max(1) as f64;
    Ok(Scores {
        mode: format!("{mode:?}").to_lowercase(),
        queries: per_query.len(),
        ndcg_at_10: per_query.iter().map(|s| s.0).sum::<f64>() / n,
        recall_at_10: per_query.iter().map(|s| s.1).sum::<f64>() / n,
        per_query,
    })
}

/// Reads a labelled set (a JSON list of [`Judged`]), checking every judged id exists in `ids`.
pub fn load_judged(
    json: &str,
    ids: &std::collections::BTreeSet<String>,
) -> Result<Vec<Judged>, Error> {
    let set: Vec<Judged> = serde_json::from_str(json)?;
    for j in &set {
        if j.relevant.is_empty() {
            return Err(Error::BadDoc {
                id: j.query.clone(),
                why: "a labelled query without a relevant document".into(),
            });
        }
        if let Some(missing) = j.relevant.keys().find(|id| !ids.contains(*id)) {
            return Err(Error::BadDoc {
                id: j.query.clone(),
                why: format!("judged document {missing:?} is not in the corpus"),
            });
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(pairs: &[(&str, u8)]) -> BTreeMap<String, u8> {
        pairs.iter().map(|(k, g)| (k.to_string(), *g)).collect()
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ndcg_is_one_for_the_ideal_order_and_less_otherwise() {
        let r = rel(&[("a", 3), ("b", 1)]);
        assert!((ndcg_at(10, &ids(&["a", "b"]), &r) - 1.0).abs() < 1e-12);
        let swapped = ndcg_at(10, &ids(&["b", "a"]), &r);
        assert!(swapped < 1.0 && swapped > 0.5, "{swapped}");
        assert_eq!(ndcg_at(10, &ids(&["x", "y"]), &r), 0.0);
        // Past k nothing counts.
        assert_eq!(ndcg_at(1, &ids(&["x", "a"]), &r), 0.0);
    }

    #[test]
    fn recall_counts_relevant_documents_in_the_first_k() {
        let r = rel(&[("a", 3), ("b", 1), ("c", 2), ("z", 0)]);
        assert!((recall_at(10, &ids(&["a", "x", "c"]), &r) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(recall_at(1, &ids(&["x", "a"]), &r), 0.0);
    }
}
