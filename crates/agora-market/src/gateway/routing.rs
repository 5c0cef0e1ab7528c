//! The order in which a job tries providers (see the parent module's documentation).

#[allow(unused_imports)]
use super::*;

/// The value at which the running total of weights first reaches half of all of them, in
/// `sorted` (value, weight) pairs; `None` for none.
pub(super) fn weighted_median<V: Copy>(sorted: &[(V, Amount)]) -> Option<V> {
    let total = sorted.iter().fold(0u128, |t, (_, w)| t.saturating_add(*w));
    let mut acc = 0u128;
    for (v, w) in sorted {
        acc = acc.saturating_add(*w);
        if acc >= total.div_ceil(2) {
            return Some(*v);
        }
    }
    None
}

/// Orders `list` as [`Gateway::run`] tries it (see the module's documentation); `below(n)`
/// returns a uniformly random number below `n`.
pub(super) fn order_candidates(
    list: Vec<ProviderListing>,
    seen: &BTreeMap<Address, Seen>,
    now: Instant,
    (input_tokens, output_tokens): (u32, u32),
    below: &mut dyn FnMut(u128) -> u128,
) -> Vec<ProviderListing> {
    let state = |p: &ProviderListing| seen.get(&p.address).copied().unwrap_or_default();
    let fee = |p: &ProviderListing| {
        let (i, o) = p.prices();
        job_fee(i, o, input_tokens, output_tokens).unwrap_or(Amount::MAX)
    };
    let class = |p: &ProviderListing| state(p).latency_ms.unwrap_or(0) / LATENCY_CLASS_MS;
    let (cooling, ready): (Vec<_>, Vec<_>) = list
        .into_iter()
        .partition(|p| state(p).cool_until.is_some_and(|t| t > now));
    // The stake-weighted median fee of every provider, cooling ones included (each counts at
    // least 1): cooling a provider down (by making it fail) cannot move the band.
    let mut by_fee: Vec<(Amount, Amount)> = ready
        .iter()
        .chain(&cooling)
        .map(|p| (fee(p), p.stake().max(1)))
        .collect();
    by_fee.sort_unstable();
    let band_fee = weighted_median(&by_fee).unwrap_or(0);
    let (mut band, mut rest): (Vec<_>, Vec<_>) =
        ready.into_iter().partition(|p| fee(p) <= band_fee);
    // The band's stake-weighted median time to first output, among those measured.
    let mut by_latency: Vec<(u64, Amount)> = band
        .iter()
        .filter_map(|p| Some((state(p).latency_ms?, p.stake().max(1))))
        .collect();
    by_latency.sort_unstable();
    let typical = weighted_median(&by_latency);
    // Drawn without replacement, by stake, slow ones divided.
    let mut out = Vec::with_capacity(band.len() + rest.len() + cooling.len());
    let weight = |p: &ProviderListing| {
        let slow = match (state(p).latency_ms, typical) {
            (Some(ms), Some(t)) => ms > t.saturating_mul(2).saturating_add(LATENCY_CLASS_MS),
            _ => false,
        };
        let stake = p.stake().max(1);
        if slow {
            (stake / SLOW_DIVISOR).max(1)
        } else {
            stake
        }
    };
    while !band.is_empty() {
        let total = band.iter().fold(0u128, |t, p| t.saturating_add(weight(p)));
        let mut r = below(total);
        let mut pick = band.len() - 1;
        for (i, p) in band.iter().enumerate() {
            let w = weight(p);
            if r < w {
                pick = i;
                break;
            }
            r -= w;
        }
        out.push(band.swap_remove(pick));
    }
    let key = |p: &ProviderListing| {
        (
            fee(p),
            class(p),
            std::cmp::Reverse(p.provider.jobs_settled),
            p.address,
        )
    };
    rest.sort_by_cached_key(key);
    let mut cooling = cooling;
    cooling.sort_by_cached_key(key);
    out.extend(rest);
    out.extend(cooling);
    out
}
