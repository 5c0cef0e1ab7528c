//! Golden tests of Yuma Consensus: the fixed-point epoch and emission split against an
//! independent f64 computation of the published formulas (`tests/yuma/reference.py`, whose
//! output is `tests/yuma/golden.json`). Six scenarios, several epochs each with bonds carried
//! over; every UID's emission must match within 1e-9 of the epoch's emission.

use agora_state::yuma::{self, EpochInput, Fx, ONE};
use serde_json::Value;

fn fx(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn to_f64(x: Fx) -> f64 {
    x as f64 / ONE as f64
}

fn amount(v: &Value) -> u128 {
    v.as_str().expect("an amount string").parse().expect("u128")
}

fn close(what: &str, got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: got {got}, the reference says {want} (tolerance {tolerance})"
    );
}

#[test]
fn epochs_match_the_reference_computation() {
    let golden: Value =
        serde_json::from_str(include_str!("yuma/golden.json")).expect("golden.json parses");
    let scenarios = golden["scenarios"].as_array().expect("scenarios");
    assert!(scenarios.len() >= 5, "at least five scenarios");
    for scenario in scenarios {
        let name = scenario["name"].as_str().expect("name");
        let stake: Vec<u128> = scenario["stake"]
            .as_array()
            .expect("stake")
            .iter()
            .map(amount)
            .collect();
        let n = stake.len();
        let emission = amount(&scenario["emission"]);
        let owner_ppm = scenario["owner_ppm"].as_u64().expect("owner_ppm") as u32;
        let mut bonds = vec![Vec::new(); n];
        for (e, step) in scenario["epochs"]
            .as_array()
            .expect("epochs")
            .iter()
            .enumerate()
        {
            let weights: Vec<Vec<(u16, u16)>> = step["weights"]
                .as_array()
                .expect("weights")
                .iter()
                .map(|row| {
                    row.as_array()
                        .expect("row")
                        .iter()
                        .map(|p| {
                            (
                                p[0].as_u64().expect("uid") as u16,
                                p[1].as_u64().expect("weight") as u16,
                            )
                        })
                        .collect()
                })
                .collect();
            let input = EpochInput {
                stake: stake.clone(),
                weights,
                bonds: bonds.clone(),
                kappa: yuma::from_u16(scenario["kappa"].as_u64().expect("kappa") as u16),
                alpha: ONE - yuma::from_ppm(scenario["bma_ppm"].as_u64().expect("bma") as u32),
                bond_penalty: yuma::from_u16(
                    scenario["bond_penalty"].as_u64().expect("beta") as u16
                ),
            };
            let out = yuma::epoch(&input);
            bonds = out.bonds.clone();
            let want = &step["expected"];
            let at = |what: &str, j: usize| format!("{name}, epoch {e}, {what}[{j}]");
            for j in 0..n {
                for (what, got) in [
                    ("consensus", &out.consensus),
                    ("incentive", &out.incentive),
                    ("dividends", &out.dividends),
                    ("validator_trust", &out.validator_trust),
                    ("trust", &out.trust),
                    ("rank", &out.rank),
                ] {
                    close(&at(what, j), to_f64(got[j]), fx(&want[what][j]), 1e-12);
                }
            }
            let split = yuma::split(emission, owner_ppm, &out.incentive, &out.dividends);
            assert_eq!(split.total(), Some(emission), "{name}: the split is exact");
            let tolerance = 1e-9 * emission as f64;
            let ws = &want["split"];
            close(
                &format!("{name}, epoch {e}, owner"),
                split.owner as f64,
                fx(&ws["owner"]),
                tolerance,
            );
            close(
                &format!("{name}, epoch {e}, recycled"),
                split.recycled as f64,
                fx(&ws["recycled"]),
                tolerance,
            );
            for j in 0..n {
                close(
                    &at("miner emission", j),
                    split.miners[j] as f64,
                    fx(&ws["miners"][j]),
                    tolerance,
                );
                close(
                    &at("validator emission", j),
                    split.validators[j] as f64,
                    fx(&ws["validators"][j]),
                    tolerance,
                );
            }
        }
    }
}

/// The reference's own claims, read from its output: the colluding minority's miner earns
/// nothing, and the weight copier earns less per unit of stake than the honest validators.
#[test]
fn the_scenarios_show_what_they_are_named_for() {
    let golden: Value =
        serde_json::from_str(include_str!("yuma/golden.json")).expect("golden.json parses");
    let find = |name: &str| {
        golden["scenarios"]
            .as_array()
            .expect("scenarios")
            .iter()
            .find(|s| s["name"] == name)
            .expect("scenario")
            .clone()
    };
    let collusion = find("colluding_minority");
    for step in collusion["epochs"].as_array().expect("epochs") {
        assert_eq!(fx(&step["expected"]["incentive"][6]), 0.0);
    }
    let copier = find("weight_copier");
    let last = &copier["epochs"]
        .as_array()
        .expect("epochs")
        .last()
        .expect("an epoch")["expected"];
    // Honest validators hold 40 % each, the copier 20 %.
    let honest = fx(&last["dividends"][0]) / 0.4;
    let copied = fx(&last["dividends"][2]) / 0.2;
    assert!(
        copied < 0.5 * honest,
        "copier {copied} vs honest {honest} per unit of stake"
    );
}
