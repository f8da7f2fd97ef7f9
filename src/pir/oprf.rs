//! Verifiable OPRF (RFC 9497, ciphersuite ristretto255-SHA512, mode VOPRF) with the `voprf`
//! crate.
//!
//! The DP holds one key per zone and epoch, derived with the RFC's `DeriveKeyPair` from a zone
//! secret (kept by the DP, at least 32 random bytes) and an info string that names the zone and
//! the epoch, so a restart or a second server reproduces the same key and the published public
//! key changes with every epoch. The client blinds the normalised SII string (`+15551112222`,
//! `bob@example.com`), the DP evaluates the blinded elements and attaches one batch DLEQ proof,
//! the client verifies the proof against the public key from PIRCFG and unblinds to the 64-byte
//! output `y`.
//!
//! Wire formats (all lengths fixed by the count):
//! - request: `u8 count (1..=MAX_BATCH) || count * blinded element (32)`
//! - response: `u8 count || count * evaluated element (32) || proof (64)`

use super::{PirError, Reader, PIR_VERSION};
use crate::name::Name;
use rand::rngs::OsRng;
use voprf::{
    BlindedElement, EvaluationElement, Group, Proof, Ristretto255, VoprfClient, VoprfServer,
};

type Suite = Ristretto255;

/// Bytes of a serialised group element (blinded or evaluated) and of the public key.
pub const ELEMENT_LEN: usize = 32;
/// Bytes of the batch DLEQ proof.
pub const PROOF_LEN: usize = 64;
/// Bytes of the OPRF output `y` (SHA-512).
pub const OUTPUT_LEN: usize = 64;
/// Most identifiers in one OPRF request (a contact-sync batch).
pub const MAX_BATCH: usize = 64;
/// Shortest accepted zone secret.
pub const MIN_ZONE_SECRET: usize = 32;

/// The OPRF output for one input.
pub type OprfOutput = [u8; OUTPUT_LEN];

/// Bytes of a request carrying `count` blinded inputs.
pub fn request_len(count: usize) -> usize {
    1 + count * ELEMENT_LEN
}

/// Bytes of a response to a request of `count` inputs.
pub fn response_len(count: usize) -> usize {
    1 + count * ELEMENT_LEN + PROOF_LEN
}

/// The DP's OPRF key for one zone and epoch.
pub struct OprfKey {
    server: VoprfServer<Suite>,
    public: [u8; ELEMENT_LEN],
    epoch: u64,
}

impl std::fmt::Debug for OprfKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OprfKey")
            .field("epoch", &self.epoch)
            .field("public", &hex::encode(self.public))
            .finish_non_exhaustive()
    }
}

/// The `info` of `DeriveKeyPair`: a versioned label, the zone's wire name and the epoch.
fn key_info(zone: &Name, epoch: u64) -> Vec<u8> {
    let mut info = Vec::with_capacity(32 + zone.as_wire().len());
    info.extend_from_slice(b"MIMI-PIR-v");
    info.push(b'0' + PIR_VERSION);
    info.extend_from_slice(b" OPRF key\0");
    info.extend_from_slice(zone.as_wire());
    info.extend_from_slice(&epoch.to_be_bytes());
    info
}

impl OprfKey {
    /// Derives the key of `zone` for `epoch` from the DP's zone secret (RFC 9497 DeriveKeyPair,
    /// seed = zone secret, info = label || zone wire name || epoch). Deterministic: every DP
    /// instance with the same secret serves the same key.
    pub fn derive(zone_secret: &[u8], zone: &Name, epoch: u64) -> Result<OprfKey, PirError> {
        if zone_secret.len() < MIN_ZONE_SECRET {
            return Err(PirError::Param(format!(
                "zone secret is {} bytes; at least {MIN_ZONE_SECRET} random bytes are needed",
                zone_secret.len()
            )));
        }
        let info = key_info(zone, epoch);
        let server = VoprfServer::<Suite>::new_from_seed(zone_secret, &info)
            .map_err(|e| PirError::Param(format!("OPRF key derivation failed: {e:?}")))?;
        let mut public = [0u8; ELEMENT_LEN];
        public.copy_from_slice(&Suite::serialize_elem(server.get_public_key()));
        Ok(OprfKey {
            server,
            public,
            epoch,
        })
    }

    /// The public key to publish in PIRCFG (32 bytes, a compressed ristretto255 point).
    pub fn public_key(&self) -> [u8; ELEMENT_LEN] {
        self.public
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Evaluates a request of one or more blinded elements and proves it (one batch proof).
    /// This is the rate-limited operation: the caller counts `request_count(request)` inputs.
    pub fn evaluate(&self, request: &[u8]) -> Result<Vec<u8>, PirError> {
        let blinded = parse_request(request)?;
        let result = self
            .server
            .batch_blind_evaluate(&mut OsRng, &blinded)
            .map_err(|e| PirError::OprfInput(format!("batch evaluation failed: {e:?}")))?;
        let mut out = Vec::with_capacity(response_len(blinded.len()));
        out.push(blinded.len() as u8);
        for message in &result.messages {
            out.extend_from_slice(&message.serialize());
        }
        out.extend_from_slice(&result.proof.serialize());
        Ok(out)
    }

    /// The unblinded OPRF output for `input`, computed directly by the key holder (used to
    /// build the database). Equal to what a client obtains through blind/evaluate/finalize.
    pub fn evaluate_direct(&self, input: &[u8]) -> Result<OprfOutput, PirError> {
        check_input(input)?;
        let out = self
            .server
            .evaluate(input)
            .map_err(|e| PirError::OprfInput(format!("evaluation failed: {e:?}")))?;
        let mut y = [0u8; OUTPUT_LEN];
        y.copy_from_slice(&out);
        Ok(y)
    }
}

/// Number of blinded inputs a request claims (for rate limiting before evaluating).
pub fn request_count(request: &[u8]) -> Result<usize, PirError> {
    let count = *request
        .first()
        .ok_or_else(|| PirError::malformed("OPRF request", "empty"))? as usize;
    if count == 0 || count > MAX_BATCH {
        return Err(PirError::malformed(
            "OPRF request",
            format!("count {count} outside 1..={MAX_BATCH}"),
        ));
    }
    if request.len() != request_len(count) {
        return Err(PirError::Length {
            what: "OPRF request",
            expected: request_len(count),
            got: request.len(),
        });
    }
    Ok(count)
}

fn parse_request(request: &[u8]) -> Result<Vec<BlindedElement<Suite>>, PirError> {
    let count = request_count(request)?;
    request[1..]
        .chunks_exact(ELEMENT_LEN)
        .take(count)
        .map(|bytes| {
            BlindedElement::<Suite>::deserialize(bytes).map_err(|_| {
                PirError::malformed("OPRF request", "a blinded element is not a valid point")
            })
        })
        .collect()
}

fn check_input(input: &[u8]) -> Result<(), PirError> {
    if input.is_empty() || input.len() > u16::MAX as usize {
        return Err(PirError::OprfInput(format!(
            "input of {} bytes (must be 1..=65535)",
            input.len()
        )));
    }
    Ok(())
}

/// The client's secret state between blinding and finalising.
pub struct OprfClientState {
    inputs: Vec<Vec<u8>>,
    clients: Vec<VoprfClient<Suite>>,
}

impl std::fmt::Debug for OprfClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OprfClientState")
            .field("inputs", &self.inputs.len())
            .finish_non_exhaustive()
    }
}

/// Blinds one or more inputs (normalised SII strings as bytes). Returns the state to keep and
/// the request to send.
pub fn blind(inputs: &[&[u8]]) -> Result<(OprfClientState, Vec<u8>), PirError> {
    if inputs.is_empty() || inputs.len() > MAX_BATCH {
        return Err(PirError::OprfInput(format!(
            "{} inputs (must be 1..={MAX_BATCH})",
            inputs.len()
        )));
    }
    let mut request = Vec::with_capacity(request_len(inputs.len()));
    request.push(inputs.len() as u8);
    let mut clients = Vec::with_capacity(inputs.len());
    for input in inputs {
        check_input(input)?;
        let blinded = VoprfClient::<Suite>::blind(input, &mut OsRng)
            .map_err(|e| PirError::OprfInput(format!("blinding failed: {e:?}")))?;
        request.extend_from_slice(&blinded.message.serialize());
        clients.push(blinded.state);
    }
    let state = OprfClientState {
        inputs: inputs.iter().map(|i| i.to_vec()).collect(),
        clients,
    };
    Ok((state, request))
}

impl OprfClientState {
    /// Number of inputs this state was blinded for.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Verifies the DP's proof against `public_key` (from PIRCFG) and unblinds: one `y` per
    /// input, in request order. A wrong key or a tampered response fails as
    /// [`PirError::OprfProof`].
    pub fn finalize(
        &self,
        response: &[u8],
        public_key: &[u8],
    ) -> Result<Vec<OprfOutput>, PirError> {
        let count = self.inputs.len();
        if response.len() != response_len(count) {
            return Err(PirError::Length {
                what: "OPRF response",
                expected: response_len(count),
                got: response.len(),
            });
        }
        let mut r = Reader::new(response, "OPRF response");
        let got = r.u8("count")? as usize;
        if got != count {
            return Err(PirError::malformed(
                "OPRF response",
                format!("answers {got} inputs, the request had {count}"),
            ));
        }
        let mut messages = Vec::with_capacity(count);
        for _ in 0..count {
            let bytes = r.take(ELEMENT_LEN, "evaluated element")?;
            messages.push(EvaluationElement::<Suite>::deserialize(bytes).map_err(|_| {
                PirError::malformed("OPRF response", "an evaluated element is not a valid point")
            })?);
        }
        let proof = Proof::<Suite>::deserialize(r.take(PROOF_LEN, "proof")?)
            .map_err(|_| PirError::malformed("OPRF response", "proof does not decode"))?;
        r.finish()?;
        if public_key.len() != ELEMENT_LEN {
            return Err(PirError::Length {
                what: "OPRF public key",
                expected: ELEMENT_LEN,
                got: public_key.len(),
            });
        }
        let pk = Suite::deserialize_elem(public_key)
            .map_err(|_| PirError::malformed("OPRF public key", "not a valid point"))?;
        let outputs =
            VoprfClient::batch_finalize(&self.inputs, &self.clients, &messages, &proof, pk)
                .map_err(|e| match e {
                    voprf::Error::ProofVerification => PirError::OprfProof,
                    other => PirError::OprfInput(format!("finalize failed: {other:?}")),
                })?;
        let mut ys = Vec::with_capacity(count);
        for output in outputs {
            let output =
                output.map_err(|e| PirError::OprfInput(format!("finalize failed: {e:?}")))?;
            let mut y = [0u8; OUTPUT_LEN];
            y.copy_from_slice(&output);
            ys.push(y);
        }
        Ok(ys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Name {
        Name::parse("1.e164.mimi.arpa.", None).unwrap()
    }

    #[test]
    fn pir_oprf_round_trip_matches_direct_evaluation() {
        let key = OprfKey::derive(&[7u8; 32], &zone(), 3).unwrap();
        let inputs: [&[u8]; 2] = [b"+15551112222", b"bob@example.com"];
        let (state, request) = blind(&inputs).unwrap();
        assert_eq!(request.len(), request_len(2));
        assert_eq!(request_count(&request).unwrap(), 2);
        let response = key.evaluate(&request).unwrap();
        assert_eq!(response.len(), response_len(2));
        let ys = state.finalize(&response, &key.public_key()).unwrap();
        assert_eq!(ys[0], key.evaluate_direct(inputs[0]).unwrap());
        assert_eq!(ys[1], key.evaluate_direct(inputs[1]).unwrap());
        assert_ne!(ys[0], ys[1]);
    }

    #[test]
    fn pir_oprf_key_is_deterministic_per_zone_and_epoch() {
        let a = OprfKey::derive(&[7u8; 32], &zone(), 3).unwrap();
        let b = OprfKey::derive(&[7u8; 32], &zone(), 3).unwrap();
        let c = OprfKey::derive(&[7u8; 32], &zone(), 4).unwrap();
        let other = Name::parse("44.e164.mimi.arpa.", None).unwrap();
        let d = OprfKey::derive(&[7u8; 32], &other, 3).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        assert_ne!(a.public_key(), c.public_key());
        assert_ne!(a.public_key(), d.public_key());
        let y = a.evaluate_direct(b"+15551112222").unwrap();
        assert_ne!(y, c.evaluate_direct(b"+15551112222").unwrap());
        assert!(OprfKey::derive(&[7u8; 16], &zone(), 3).is_err());
    }

    #[test]
    fn pir_oprf_wrong_public_key_fails_the_proof() {
        let key = OprfKey::derive(&[7u8; 32], &zone(), 3).unwrap();
        let other = OprfKey::derive(&[8u8; 32], &zone(), 3).unwrap();
        let (state, request) = blind(&[b"+15551112222"]).unwrap();
        let response = key.evaluate(&request).unwrap();
        assert_eq!(
            state.finalize(&response, &other.public_key()),
            Err(PirError::OprfProof)
        );
        // A response from the wrong key, checked against the right public key, fails too.
        let forged = other.evaluate(&request).unwrap();
        assert_eq!(
            state.finalize(&forged, &key.public_key()),
            Err(PirError::OprfProof)
        );
    }

    #[test]
    fn pir_oprf_rejects_malformed_messages() {
        let key = OprfKey::derive(&[7u8; 32], &zone(), 3).unwrap();
        assert!(key.evaluate(&[]).is_err());
        assert!(key.evaluate(&[0]).is_err());
        assert!(key.evaluate(&[1, 2, 3]).is_err());
        assert!(key.evaluate(&[1; 33]).is_err());
        assert!(key.evaluate(&[(MAX_BATCH + 1) as u8]).is_err());
        let (state, request) = blind(&[b"x"]).unwrap();
        let response = key.evaluate(&request).unwrap();
        assert!(state.finalize(&response[..40], &key.public_key()).is_err());
        assert!(state.finalize(&response, &[0u8; 31]).is_err());
        let mut bad = response.clone();
        bad[5] ^= 1;
        assert!(state.finalize(&bad, &key.public_key()).is_err());
        assert!(blind(&[]).is_err());
        assert!(blind(&[b""]).is_err());
    }
}
