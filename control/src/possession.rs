//! Proof of possession: an agent that connects serving a target proves it
//! holds the target's private key, not merely its public half (the protocol
//! side is `Control::agent_challenges` and `connect_agent`).
//!
//! A target's public key is public (it is shown to every operator who seals
//! a secret), so presenting it proves nothing: without this check, any agent
//! of the pool could connect serving a target, be handed its runs (plain
//! environment, sealed secrets it cannot open) and report invented output
//! and exit codes while the real command never runs. So before connecting
//! an agent asks for challenges ([`Control::agent_challenges`]): for each
//! target, 32 random bytes sealed (the vault's sealed box) to the key it
//! will present, under [`PROOF_NAME`] and the target's name. Connecting
//! ([`check_proofs`]) needs, for every target, the opened nonce of a
//! challenge issued to this agent for this target and this key, unexpired;
//! each challenge is consumed by its first use, right or wrong. Only the
//! nonce's SHA-256 is stored, compared in constant time.
//!
//! The agent opens a challenge only under [`PROOF_NAME`], which no secret
//! can be named, so a challenge cannot turn the agent into an oracle that
//! opens one of its secrets for whoever sends it (the vault binds the name
//! into what it seals).

use crate::error::Error;
use crate::store::agents::ChallengeRow;
use crate::store::{self, Tx};
use crate::token::random_hex;
use rand::RngCore as _;
use sealrun_vault::PublicKey;
use sealrun_wire::agent::{Challenge, PROOF_NAME, Proof};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Bytes of a challenge's nonce.
const NONCE_BYTES: usize = 32;

/// A challenge for `agent_id` to prove it holds the private half of `key`,
/// target `target`'s: the challenge to send, and the row to store.
pub(crate) fn challenge(
    agent_id: &str,
    target: &str,
    key: &PublicKey,
    expires_ms: i64,
) -> Result<(Challenge, ChallengeRow), Error> {
    let mut nonce = Zeroizing::new([0u8; NONCE_BYTES]);
    rand::rngs::OsRng.fill_bytes(&mut nonce[..]);
    let sealed = sealrun_vault::seal(key, PROOF_NAME, target, &nonce[..])
        .map_err(|e| Error::internal(format_args!("cannot seal a challenge: {e}")))?;
    let id = format!("ch_{}", random_hex(16));
    let row = ChallengeRow {
        id: id.clone(),
        agent_id: agent_id.to_owned(),
        target: target.to_owned(),
        key_id: key.key_id().0,
        nonce_hash: Sha256::digest(&nonce[..]).into(),
        expires_ms,
    };
    Ok((
        Challenge {
            target: target.to_owned(),
            id,
            sealed,
        },
        row,
    ))
}

/// The targets among `served` (name, presented key) for which `proofs` hold
/// no valid answer to a challenge issued to `agent_id` for that target and
/// key before `now`. Every challenge a proof names is consumed.
pub(crate) fn check_proofs<'s>(
    tx: &Tx<'_>,
    agent_id: &str,
    proofs: &[Proof],
    served: impl IntoIterator<Item = (&'s str, &'s PublicKey)>,
    now: i64,
) -> Result<Vec<String>, Error> {
    let keys: BTreeMap<&str, String> = served
        .into_iter()
        .map(|(name, key)| (name, key.key_id().0))
        .collect();
    let mut proven = BTreeSet::new();
    for proof in proofs.iter().take(keys.len().saturating_mul(2).max(1)) {
        let Some(row) = store::agents::take_challenge(tx, &proof.challenge_id, agent_id)? else {
            continue;
        };
        let Some(key_id) = keys.get(proof.target.as_str()) else {
            continue;
        };
        let Ok(nonce) = hex::decode(&proof.nonce) else {
            continue;
        };
        let nonce = Zeroizing::new(nonce);
        let hash: [u8; 32] = Sha256::digest(&nonce[..]).into();
        let valid = row.target == proof.target
            && &row.key_id == key_id
            && row.expires_ms >= now
            && bool::from(hash.ct_eq(&row.nonce_hash));
        if valid {
            proven.insert(proof.target.as_str());
        }
    }
    Ok(keys
        .keys()
        .filter(|t| !proven.contains(*t))
        .map(|t| (*t).to_owned())
        .collect())
}
