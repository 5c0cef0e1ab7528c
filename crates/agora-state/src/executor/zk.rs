//! The zero-knowledge messages (DESIGN.md §9; the records and who can abuse what are described in
//! [`crate::zk`]).

use super::*;
use crate::{
    ZkAttestation, ZkCertification, ZkJobProof, ZkModelRecord, verify_claim, zk_attest_context,
    zk_attestation_key, zk_certification_key, zk_file_key, zk_job_context, zk_job_key,
    zk_model_key, zk_seq_key,
};
use agora_types::{MAX_REGISTER_ROWS, MAX_REGISTER_WEIGHTS, ModelKind, ZkClaim};
use agora_zk::{ProvingKey, VerifyingKey, ZkModel};

type TxResult = Result<std::result::Result<(), TxError>>;

impl Executor<'_> {
    /// `Message::RegisterZkModel`.
    pub(super) fn register_zk_model(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        name: &str,
        file: &[u8],
        events: &mut Vec<Event>,
    ) -> TxResult {
        if let Err(why) = agora_types::check_model_name(name) {
            return Ok(Err(TxError::InvalidModel(why)));
        }
        // The model holding the name, if one does: checked once the id is known (after the
        // setup, which the message's work units pay for), since a squat under this very id may
        // hold it.
        let taken = self.get::<Hash>(scratch, &model_name_key(name))?;
        // The same file again is refused before the setup (the costly part) runs.
        let file_hash = Hash::digest(file);
        if let Some(id) = self.get::<Hash>(scratch, &zk_file_key(&file_hash))? {
            return Ok(Err(TxError::ZkModelExists { id: id.to_hex() }));
        }
        // The key is derived here, from the weights themselves: a registrant cannot commit to
        // columns the circuit does not expect (a key under which anything verifies).
        let model = match ZkModel::from_bytes(file) {
            Ok(model) => model,
            Err(e) => return Ok(Err(TxError::InvalidZk(e.to_string()))),
        };
        if model.params() > MAX_REGISTER_WEIGHTS {
            return Ok(Err(TxError::InvalidZk(format!(
                "a model registered on chain has at most {MAX_REGISTER_WEIGHTS} weights"
            ))));
        }
        // What the setup costs follows the traces' heights, not the weights alone (a narrow,
        // deep model has few weights and tall traces).
        let (mac, act, _) = model.architecture().trace_rows();
        if mac > MAX_REGISTER_ROWS.0 || act > MAX_REGISTER_ROWS.1 {
            return Ok(Err(TxError::InvalidZk(format!(
                "a model registered on chain has at most {} rows of products and {} activations",
                MAX_REGISTER_ROWS.0, MAX_REGISTER_ROWS.1
            ))));
        }
        let vk = match ProvingKey::new(model) {
            Ok(pk) => pk.verifying_key().clone(),
            Err(e) => return Ok(Err(TxError::InvalidZk(e.to_string()))),
        };
        let id = Hash(vk.model_id());
        if self
            .get::<ZkModelRecord>(scratch, &zk_model_key(&id))?
            .is_some()
        {
            return Ok(Err(TxError::ZkModelExists { id: id.to_hex() }));
        }
        // Names are unique across the registry.
        if let Some(other) = taken
            && other != id
        {
            return Ok(Err(TxError::InvalidModel(format!(
                "the name {name:?} is taken by model {other}"
            ))));
        }
        // Entered in the model registry too, so that providers can serve it. The chain derived
        // the id, so an entry made under it by hand (squatting it) is replaced, with its name
        // and any source published for it.
        if let Some(squat) = self.get::<ModelInfo>(scratch, &model_key(&id))?
            && self.get::<Hash>(scratch, &model_name_key(&squat.name))? == Some(id)
        {
            scratch.writes.insert(model_name_key(&squat.name), None);
        }
        scratch.writes.insert(crate::model_source_key(&id), None);
        let info = ModelInfo {
            name: name.to_string(),
            kind: ModelKind::Provable,
        };
        scratch.writes.insert(model_key(&id), Some(encode(&info)));
        scratch
            .writes
            .insert(model_name_key(name), Some(encode(&id)));
        let record = ZkModelRecord {
            name: name.to_string(),
            key: vk.to_bytes(),
            registrant: *sender,
            height: self.ctx.height,
            file_hash,
        };
        scratch
            .writes
            .insert(zk_file_key(&file_hash), Some(encode(&id)));
        scratch
            .writes
            .insert(zk_model_key(&id), Some(encode(&record)));
        self.record_model_owner(scratch, &id, sender);
        events.push(Event::new(
            "zk_model_registered",
            &[
                ("model", id.to_hex()),
                ("name", name.to_string()),
                ("weights", vk.arch.params().to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::CertifyZkInput`.
    pub(super) fn certify_zk_input(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        subject: &Address,
        commitment: &Hash,
        events: &mut Vec<Event>,
    ) -> TxResult {
        let record = ZkCertification {
            commitment: *commitment,
            height: self.ctx.height,
        };
        scratch
            .writes
            .insert(zk_certification_key(sender, subject), Some(encode(&record)));
        events.push(Event::new(
            "zk_input_certified",
            &[
                ("certifier", sender.to_string()),
                ("subject", subject.to_string()),
                ("commitment", commitment.to_hex()),
            ],
        ));
        Ok(Ok(()))
    }

    /// The registered key of `claim`'s model, after the checks that need no verification.
    fn zk_key(
        &self,
        scratch: &Scratch,
        claim: &ZkClaim,
    ) -> Result<std::result::Result<Vec<u8>, TxError>> {
        if let Err(e) = claim.check() {
            return Ok(Err(TxError::InvalidZk(e.to_string())));
        }
        match self.get::<ZkModelRecord>(scratch, &zk_model_key(&claim.model))? {
            Some(record) => Ok(Ok(record.key)),
            None => Ok(Err(TxError::UnknownZkModel {
                id: claim.model.to_hex(),
            })),
        }
    }

    /// `Message::ZkAttest`.
    pub(super) fn zk_attest(
        &mut self,
        scratch: &mut Scratch,
        sender: &Address,
        claim: &ZkClaim,
        certifier: &Option<Address>,
        proof: &[u8],
        events: &mut Vec<Event>,
    ) -> TxResult {
        let key = match self.zk_key(scratch, claim)? {
            Ok(key) => key,
            Err(e) => return Ok(Err(e)),
        };
        let mut certified_height = None;
        if let Some(certifier) = certifier {
            let certified: Option<ZkCertification> =
                self.get(scratch, &zk_certification_key(certifier, sender))?;
            match certified {
                Some(c) if c.commitment == claim.input_commitment => {
                    certified_height = Some(c.height);
                }
                _ => {
                    return Ok(Err(TxError::ZkUncertified {
                        certifier: *certifier,
                    }));
                }
            }
        }
        let seq_key = zk_seq_key(sender);
        let seq: u64 = self.get(scratch, &seq_key)?.unwrap_or(0);
        let context = zk_attest_context(&self.ctx.chain_id, sender, seq);
        if let Err(e) = verify_claim(&key, claim, &context, proof) {
            return Ok(Err(TxError::ZkProofRejected(e.to_string())));
        }
        scratch.writes.insert(seq_key, Some(encode(&(seq + 1))));
        let record = ZkAttestation {
            claim: claim.clone(),
            certifier: *certifier,
            certified_height,
            seq,
            height: self.ctx.height,
        };
        scratch.writes.insert(
            zk_attestation_key(sender, &claim.model),
            Some(encode(&record)),
        );
        events.push(Event::new(
            "zk_attested",
            &[
                ("account", sender.to_string()),
                ("model", claim.model.to_hex()),
                ("threshold", claim.threshold.to_string()),
                ("below", claim.below.to_string()),
            ],
        ));
        Ok(Ok(()))
    }

    /// `Message::SettleZkJob`.
    pub(super) fn settle_zk_job(
        &mut self,
        scratch: &mut Scratch,
        job: &SettledJob,
        claim: &ZkClaim,
        proof: &[u8],
        events: &mut Vec<Event>,
    ) -> TxResult {
        let (req, rec) = (&job.request.request, &job.receipt.receipt);
        let invalid = |why: &str| Ok(Err(TxError::InvalidZk(why.to_string())));
        if req.params.verification != Verification::Zk {
            return invalid("the request's verification level is not zk");
        }
        if claim.model != req.model {
            return invalid("the claim's model is not the request's");
        }
        if claim.input_commitment != req.input_hash {
            return invalid("the claim's input commitment is not the request's input hash");
        }
        // The receipt names the claim and the very proof the client received.
        if rec.output_hash != claim.output_hash(proof) {
            return invalid("the receipt's output hash is not that of the claim and this proof");
        }
        // The client pays for its result: a job's claim shows the outputs.
        if claim.outputs.is_none() {
            return invalid("a job's claim shows its outputs");
        }
        let key = match self.zk_key(scratch, claim)? {
            Ok(key) => key,
            Err(e) => return Ok(Err(e)),
        };
        // A proved run's "tokens" are the model's inputs and outputs: the fee follows the model,
        // not the provider's word.
        let arch = match VerifyingKey::from_bytes(&key) {
            Ok(vk) => vk.arch,
            Err(e) => return Ok(Err(TxError::InvalidZk(e.to_string()))),
        };
        if rec.input_tokens as usize != arch.inputs()
            || rec.output_tokens as usize != arch.outputs()
        {
            return invalid("a proved job's tokens are the model's inputs and outputs");
        }
        // Everything but the proof first, on a copy: a job that cannot settle costs no verification.
        let mut trial = scratch.clone();
        let event = match self.settle(&mut trial, job, true)? {
            Ok(event) => event,
            Err(why) => {
                return Ok(Err(TxError::ZkJobRejected {
                    code: why.code(),
                    reason: why.to_string(),
                }));
            }
        };
        let context = zk_job_context(&self.ctx.chain_id, &req.id());
        if let Err(e) = verify_claim(&key, claim, &context, proof) {
            return Ok(Err(TxError::ZkProofRejected(e.to_string())));
        }
        *scratch = trial;
        let record = ZkJobProof {
            claim: claim.clone(),
            proof_hash: Hash::digest(proof),
            proof_bytes: u32::try_from(proof.len()).unwrap_or(u32::MAX),
        };
        scratch
            .writes
            .insert(zk_job_key(&req.id()), Some(encode(&record)));
        events.push(event);
        Ok(Ok(()))
    }
}
