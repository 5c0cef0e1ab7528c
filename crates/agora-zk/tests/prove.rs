#![allow(clippy::unwrap_used)]

use agora_zk::{Context, Layer, ProvingKey, ZkModel, input_commitment, verify};

/// A pseudo-random model with the given layer sizes and shifts.
fn model(sizes: &[u32], shifts: &[u8], seed: u64) -> ZkModel {
    let mut m = ZkModel::synthetic("test", sizes, seed).unwrap();
    for (layer, &shift) in m.layers.iter_mut().zip(shifts) {
        layer.shift = shift;
    }
    m
}

fn ctx(n: u8) -> Context {
    Context {
        chain_id: [7; 32],
        nonce: [n; 32],
    }
}

#[test]
fn a_proof_verifies_and_its_outputs_are_the_runtime_s() {
    let m = model(&[6, 5, 3], &[8, 4], 1);
    let input: Vec<i8> = vec![-128, 127, 0, 5, -7, 100];
    let want = m.forward(&input).unwrap();
    let pk = ProvingKey::new(m).unwrap();
    let (statement, proof) = pk.prove(&input, &[9; 8], 0, false, &ctx(1)).unwrap();
    assert_eq!(statement.outputs.as_deref(), Some(&want[..]));
    assert_eq!(statement.below, want[0] < 0);
    assert_eq!(
        statement.input_commitment,
        input_commitment(&input, &[9; 8])
    );
    verify(pk.verifying_key(), &statement, &ctx(1), &proof).unwrap();
}

/// One model, one proof with the outputs public and one with them hidden, shared by the tests
/// below (proving takes a few seconds in a debug build).
struct Fixture {
    pk: ProvingKey,
    input: Vec<i8>,
    shown: (agora_zk::Statement, Vec<u8>),
    hidden: (agora_zk::Statement, Vec<u8>),
}

fn fixture() -> &'static Fixture {
    static F: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let pk = ProvingKey::new(model(&[20, 12, 2], &[6, 3], 2)).unwrap();
        let input: Vec<i8> = (0..20).map(|i| (i * 13 - 120) as i8).collect();
        let score = pk.model().forward(&input).unwrap()[0];
        let shown = pk
            .prove(&input, &[1, 2, 3, 4, 5, 6, 7, 8], score + 1, false, &ctx(3))
            .unwrap();
        let hidden = pk.prove(&input, &[8; 8], score, true, &ctx(3)).unwrap();
        Fixture {
            pk,
            input,
            shown,
            hidden,
        }
    })
}

#[test]
fn a_hidden_score_proves_only_the_predicate() {
    let f = fixture();
    let (st, proof) = &f.hidden;
    assert!(st.outputs.is_none());
    // The threshold is the score itself: "below" is false, and proved.
    assert!(!st.below);
    verify(f.pk.verifying_key(), st, &ctx(3), proof).unwrap();
    let mut lie = st.clone();
    lie.below = true;
    assert!(verify(f.pk.verifying_key(), &lie, &ctx(3), proof).is_err());
    let (st, proof) = &f.shown;
    assert!(st.below);
    verify(f.pk.verifying_key(), st, &ctx(3), proof).unwrap();
}

#[test]
fn a_changed_output_threshold_or_commitment_is_refused() {
    let f = fixture();
    let vk = f.pk.verifying_key();
    let (st, proof) = &f.shown;
    let mut changed = st.clone();
    changed.outputs.as_mut().unwrap()[1] += 1;
    assert!(matches!(
        verify(vk, &changed, &ctx(3), proof),
        Err(agora_zk::Error::Rejected(_))
    ));
    let mut changed = st.clone();
    changed.t += 1;
    assert!(verify(vk, &changed, &ctx(3), proof).is_err());
    let mut changed = st.clone();
    changed.input_commitment[3] ^= 1;
    assert!(matches!(
        verify(vk, &changed, &ctx(3), proof),
        Err(agora_zk::Error::Rejected(_))
    ));
    // The commitment is the input's under its salt, and another salt gives another commitment.
    assert_eq!(
        st.input_commitment,
        input_commitment(&f.input, &[1, 2, 3, 4, 5, 6, 7, 8])
    );
    assert_ne!(
        st.input_commitment,
        input_commitment(&f.input, &[1, 2, 3, 4, 5, 6, 7, 9])
    );
    // Outputs that contradict the predicate, or out of range, are refused before any work.
    let mut changed = st.clone();
    changed.below = !changed.below;
    assert!(matches!(
        verify(vk, &changed, &ctx(3), proof),
        Err(agora_zk::Error::Statement(_))
    ));
    let mut changed = st.clone();
    changed.t = 1 << 40;
    assert!(matches!(
        verify(vk, &changed, &ctx(3), proof),
        Err(agora_zk::Error::Statement(_))
    ));
    // Extreme values are refused, never a panic (|i64::MIN| does not exist).
    let mut changed = st.clone();
    changed.t = i64::MIN;
    assert!(matches!(
        verify(vk, &changed, &ctx(3), proof),
        Err(agora_zk::Error::Statement(_))
    ));
    let mut changed = st.clone();
    changed.outputs.as_mut().unwrap()[0] = i64::MIN;
    assert!(matches!(
        verify(vk, &changed, &ctx(3), proof),
        Err(agora_zk::Error::Statement(_))
    ));
    let mut changed = st.clone();
    changed.outputs.as_mut().unwrap().push(0);
    assert!(matches!(
        verify(vk, &changed, &ctx(3), proof),
        Err(agora_zk::Error::Statement(_))
    ));
}

#[test]
fn a_proof_for_another_context_or_model_is_refused() {
    let f = fixture();
    let (st, proof) = &f.shown;
    // Another job or account, another chain: Fiat–Shamir starts elsewhere.
    assert!(verify(f.pk.verifying_key(), st, &ctx(4), proof).is_err());
    let other_chain = Context {
        chain_id: [8; 32],
        nonce: [3; 32],
    };
    assert!(verify(f.pk.verifying_key(), st, &other_chain, proof).is_err());
    // The same shape with other weights is another model: its key refuses the proof.
    let other = ProvingKey::new(model(&[20, 12, 2], &[6, 3], 99)).unwrap();
    assert_eq!(other.verifying_key().arch, f.pk.verifying_key().arch);
    assert_ne!(
        other.verifying_key().model_id(),
        f.pk.verifying_key().model_id()
    );
    assert!(matches!(
        verify(other.verifying_key(), st, &ctx(3), proof),
        Err(agora_zk::Error::Rejected(_))
    ));
    // Another shape: the trace sizes differ, refused before verifying.
    let small = ProvingKey::new(model(&[3, 2], &[2], 5)).unwrap();
    let mut st2 = st.clone();
    st2.outputs = Some(vec![0, 0]);
    assert!(verify(small.verifying_key(), &st2, &ctx(3), proof).is_err());
}

#[test]
fn truncated_or_corrupted_proofs_are_refused_without_a_panic() {
    let f = fixture();
    let vk = f.pk.verifying_key();
    let (st, proof) = &f.shown;
    for len in [0, 1, 100, proof.len() / 2, proof.len() - 1] {
        assert!(
            verify(vk, st, &ctx(3), &proof[..len]).is_err(),
            "truncated to {len}"
        );
    }
    // Flip one byte at a spread of places: each is refused (some fail to parse, some to verify).
    let step = proof.len() / 40;
    for at in (0..proof.len()).step_by(step.max(1)) {
        let mut bad = proof.clone();
        bad[at] ^= 0x5a;
        assert!(verify(vk, st, &ctx(3), &bad).is_err(), "byte {at} flipped");
    }
    let mut long = proof.clone();
    long.push(0);
    assert!(verify(vk, st, &ctx(3), &long).is_err());
    let huge = vec![0u8; agora_zk::MAX_PROOF_BYTES + 1];
    assert!(matches!(
        verify(vk, st, &ctx(3), &huge),
        Err(agora_zk::Error::Proof(_))
    ));
}

#[test]
fn a_verifying_key_round_trips_and_garbage_is_refused() {
    let f = fixture();
    let vk = f.pk.verifying_key();
    let bytes = vk.to_bytes();
    assert_eq!(&agora_zk::VerifyingKey::from_bytes(&bytes).unwrap(), vk);
    assert!(agora_zk::VerifyingKey::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(agora_zk::VerifyingKey::from_bytes(&[0xff; 40]).is_err());
    // The key is recomputed from the model file alone: same model, same key.
    let again = ProvingKey::new(f.pk.model().clone()).unwrap();
    assert_eq!(again.verifying_key(), vk);
}

#[test]
fn the_runtime_rounds_rescales_and_clamps_as_specified() {
    // One hidden neuron: z = 3·10 + (-2)·5 + 1 = 21; shift 2 rounds half up: (21 + 2) >> 2 = 5.
    // Output: 4·5 - 7 = 13, shift 1: (13 + 1) >> 1 = 7.
    let m = ZkModel {
        name: "hand".into(),
        layers: vec![
            Layer {
                n_in: 2,
                n_out: 1,
                weights: vec![3, -2],
                bias: vec![1],
                shift: 2,
            },
            Layer {
                n_in: 1,
                n_out: 1,
                weights: vec![4],
                bias: vec![-7],
                shift: 1,
            },
        ],
    };
    assert_eq!(m.forward(&[10, 5]).unwrap(), vec![7]);
    // Negative sums rectify to 0; large ones clamp to 127.
    // (The hidden value is 0: the output is (-7 + 1) >> 1.)
    assert_eq!(m.forward(&[-100, 100]).unwrap(), vec![(-7 + 1) >> 1]);
    assert_eq!(
        m.forward(&[127, -128]).unwrap(),
        vec![(4 * 127 - 7 + 1) >> 1]
    );
    assert!(m.forward(&[1]).is_err());
    // And the circuit agrees on every one of them.
    let pk = ProvingKey::new(m.clone()).unwrap();
    for input in [[10i8, 5], [-100, 100], [127, -128]] {
        let (st, proof) = pk.prove(&input, &[0; 8], 0, false, &ctx(9)).unwrap();
        assert_eq!(st.outputs.as_deref(), Some(&m.forward(&input).unwrap()[..]));
        verify(pk.verifying_key(), &st, &ctx(9), &proof).unwrap();
    }
}

#[test]
fn models_beyond_the_limits_are_refused() {
    let ok = model(&[4, 3, 2], &[4, 2], 1);
    ok.validate().unwrap();
    let mut m = ok.clone();
    m.layers[0].weights.pop();
    assert!(m.validate().is_err());
    let mut m = ok.clone();
    m.layers[1].n_in = 4;
    assert!(m.validate().is_err());
    let mut m = ok.clone();
    m.layers[0].shift = 21;
    assert!(m.validate().is_err());
    let mut m = ok.clone();
    m.layers[0].bias[0] = (1 << 25) + 1;
    assert!(m.validate().is_err());
    assert!(ZkModel::synthetic("big", &[4097, 1], 1).is_err());
    assert!(
        ZkModel::synthetic("wide", &[4, 9], 1).is_err(),
        "more than 8 outputs"
    );
    let bytes = ok.to_bytes();
    assert_eq!(ZkModel::from_bytes(&bytes).unwrap(), ok);
    assert!(ZkModel::from_bytes(&bytes[..bytes.len() - 3]).is_err());
    assert!(ProvingKey::new(m).is_err());
}
