//! `agora bench yuma`: the time of one subnet epoch — Yuma Consensus alone, and the whole epoch
//! block on the state machine (reading every neuron, stake, weight and bond row, paying out,
//! writing back) — and the state a subnet takes, for a subnet of `uids` UIDs and `validators`
//! validators who weight every UID; then how the time grows with both.

use agora_state::subnet::{
    HotkeyStake, Neuron, Subnet, SubnetHyperparams, SubnetIndex, SubnetSlot,
};
use agora_state::yuma::{self, EpochInput};
use agora_state::{
    BlockContext, Delegation, Executor, Genesis, MemState, StateRead, WeightRow, bonds_key,
    hotkey_stake_key, hotkey_uid_key, neuron_key, subnet_index_key, subnet_key, weights_key,
};
use agora_types::{AGR, Address, Hash, SubnetTask};
use anyhow::{Result, bail};
use clap::Args;
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct YumaArgs {
    /// UIDs in the subnet (at most 256).
    #[arg(long, default_value_t = 256)]
    pub uids: u16,
    /// Validators (UIDs with stake and weights on every UID).
    #[arg(long, default_value_t = 64)]
    pub validators: u16,
    /// Epochs timed per measurement (the median and the slowest are printed).
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
}

/// A deterministic pseudo-random stream (benchmark data needs no better).
pub(crate) struct Lcg(pub(crate) u64);

impl Lcg {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn input(uids: u16, validators: u16, rng: &mut Lcg) -> EpochInput {
    let n = usize::from(uids);
    let mut stake = vec![0u128; n];
    let mut weights = vec![Vec::new(); n];
    for v in 0..usize::from(validators.min(uids)) {
        stake[v] = u128::from(rng.next() % 100_000 + 1) * AGR;
        weights[v] = (0..uids)
            .map(|j| (j, (rng.next() % 65_535) as u16 + 1))
            .collect();
    }
    EpochInput {
        stake,
        weights,
        bonds: vec![Vec::new(); n],
        kappa: yuma::from_u16(32_767),
        alpha: yuma::from_ppm(100_000),
        bond_penalty: yuma::ONE,
    }
}

fn stats(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (
        ms(times[times.len() / 2]),
        ms(*times.last().expect("timed")),
    )
}

/// Median and slowest time of Yuma alone (bonds carried from a first epoch).
fn time_yuma(uids: u16, validators: u16, epochs: usize) -> (f64, f64) {
    let mut rng = Lcg(7);
    let mut input = input(uids, validators, &mut rng);
    input.bonds = yuma::epoch(&input).bonds;
    let times = (0..epochs.max(1))
        .map(|_| {
            let start = Instant::now();
            let out = yuma::epoch(&input);
            let took = start.elapsed();
            std::hint::black_box(out);
            took
        })
        .collect();
    stats(times)
}

/// A chain state holding one subnet as `input` describes, with bonds from a first epoch.
fn subnet_state(uids: u16, validators: u16, tempo: u64) -> Result<MemState> {
    let mut rng = Lcg(11);
    let epoch_input = input(uids, validators, &mut rng);
    let bonds = yuma::epoch(&epoch_input).bonds;
    let mut state = MemState::default();
    state.apply(&Genesis::new("bench-yuma").initial_writes()?);
    let put = |s: &mut MemState, k: Vec<u8>, v: Vec<u8>| {
        s.0.insert(k, v);
    };
    let hotkey = |uid: u16| {
        Address(
            Hash::digest(&uid.to_le_bytes()).0[..20]
                .try_into()
                .expect("20 bytes"),
        )
    };
    let params = SubnetHyperparams {
        tempo,
        max_validators: validators.max(1),
        ..SubnetHyperparams::default()
    };
    let total_stake: u128 = epoch_input.stake.iter().sum();
    let subnet = Subnet {
        netuid: 0,
        name: "bench".into(),
        owner: Address([1; 20]),
        task: SubnetTask::Chat,
        burn: params.min_burn,
        params,
        pending: None,
        created_at: 0,
        lock: 0,
        n: uids,
        registrations: 0,
        last_epoch: 1,
        epochs: 1,
    };
    put(&mut state, subnet_key(0), borsh::to_vec(&subnet)?);
    let index = SubnetIndex {
        subnets: vec![SubnetSlot {
            netuid: 0,
            next_epoch: tempo - 1,
            stake: total_stake,
            registered_stake: total_stake,
            pending: 1_000 * AGR,
            observed: 0,
        }],
        last_lock: 0,
        last_lock_height: 0,
        next_netuid: 1,
    };
    put(&mut state, subnet_index_key(), borsh::to_vec(&index)?);
    for uid in 0..uids {
        let i = usize::from(uid);
        let neuron = Neuron {
            hotkey: hotkey(uid),
            endpoint: "http://127.0.0.1:1".into(),
            ..Neuron::default()
        };
        put(&mut state, neuron_key(0, uid), borsh::to_vec(&neuron)?);
        put(
            &mut state,
            hotkey_uid_key(0, &neuron.hotkey),
            borsh::to_vec(&uid)?,
        );
        if epoch_input.stake[i] == 0 {
            continue;
        }
        let stake = HotkeyStake {
            delegations: vec![Delegation {
                delegator: neuron.hotkey,
                active: epoch_input.stake[i],
                fresh: 0,
                fresh_height: 0,
            }],
        };
        put(
            &mut state,
            hotkey_stake_key(0, &neuron.hotkey),
            borsh::to_vec(&stake)?,
        );
        let row = WeightRow {
            set_at: 1,
            revealed_at: 2,
            entries: epoch_input.weights[i].clone(),
        };
        put(&mut state, weights_key(0, uid), borsh::to_vec(&row)?);
        let b: Vec<(u16, u64)> = bonds[i].iter().map(|&(j, x)| (j, x as u64)).collect();
        put(&mut state, bonds_key(0, uid), borsh::to_vec(&b)?);
    }
    // Neurons registered at 0 and weights set at 1: everything counts.
    Ok(state)
}

/// Bytes (keys and values) of one subnet's state.
fn subnet_bytes(state: &MemState) -> usize {
    const PREFIXES: [&[u8]; 8] = [
        b"sn/", b"snn/", b"snu/", b"snw/", b"snb/", b"snc/", b"sns/", b"snh/",
    ];
    state
        .0
        .iter()
        .filter(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| k.len() + v.len())
        .sum()
}

/// Median and slowest time of the epoch block on the state machine.
fn time_chain(state: &MemState, tempo: u64, epochs: usize) -> Result<(f64, f64)> {
    let height = tempo - 1;
    let ctx = BlockContext {
        chain_id: "bench-yuma".into(),
        height,
        time_ms: height * 500,
        proposer: Address([2; 20]),
        seed: Hash::digest(b"seed"),
    };
    let mut times = Vec::new();
    for _ in 0..epochs.max(1) {
        let start = Instant::now();
        let out = Executor::execute_block(state as &dyn StateRead, ctx.clone(), &[])?;
        times.push(start.elapsed());
        if !out.block_events.iter().any(|e| e.kind == "subnet_epoch") {
            bail!("the block ran no epoch");
        }
    }
    Ok(stats(times))
}

pub fn run(args: YumaArgs) -> Result<()> {
    if args.uids == 0 || args.uids > agora_types::MAX_UIDS || args.validators > args.uids {
        bail!("--uids must be 1 to 256 and --validators at most --uids");
    }
    let tempo = 100;
    println!(
        "one subnet epoch: {} UIDs, {} validators weighting every UID, {} epochs per figure (one core)",
        args.uids, args.validators, args.epochs
    );
    let (yuma_p50, yuma_max) = time_yuma(args.uids, args.validators, args.epochs);
    let state = subnet_state(args.uids, args.validators, tempo)?;
    let (chain_p50, chain_max) = time_chain(&state, tempo, args.epochs)?;
    let bytes = subnet_bytes(&state);
    println!("| measure | median ms | slowest ms |");
    println!("| --- | --- | --- |");
    println!("| Yuma Consensus alone | {yuma_p50:.3} | {yuma_max:.3} |");
    println!("| epoch block (read, Yuma, pay, write) | {chain_p50:.3} | {chain_max:.3} |");
    println!(
        "state per subnet: {bytes} bytes ({:.1} KiB) — neurons, weights, bonds, stake",
        bytes as f64 / 1024.0
    );
    println!();
    println!("growth (Yuma alone, median ms):");
    let validators = [8u16, 16, 32, 64];
    print!("| UIDs |");
    for v in validators {
        print!(" {v} validators |");
    }
    println!();
    println!("| --- |{}", " --- |".repeat(validators.len()));
    for uids in [64u16, 128, 256] {
        print!("| {uids} |");
        for v in validators {
            let (p50, _) = time_yuma(uids, v.min(uids), args.epochs.min(20));
            print!(" {p50:.3} |");
        }
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_state_runs_a_real_epoch() {
        let state = subnet_state(16, 4, 100).unwrap();
        assert!(subnet_bytes(&state) > 0);
        time_chain(&state, 100, 1).unwrap();
    }
}
