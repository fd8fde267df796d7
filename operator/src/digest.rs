//! The short digests the operator writes where people can see them (the pod template's
//! config hash, a token's digest, the sync's record hash): 64 bits of SHA-256, in hex. Each
//! caller chooses what goes in and how it is separated.

use sha2::{Digest, Sha256};

/// SHA-256 over `chunks` in order, its first 64 bits in hex (16 characters).
pub(crate) fn short(chunks: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for c in chunks {
        h.update(c);
    }
    let first: [u8; 8] = h.finalize()[..8].try_into().expect("SHA-256 has 32 bytes");
    format!("{:016x}", u64::from_be_bytes(first))
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_are_hashed_in_order_and_cut_to_64_bits() {
        // SHA-256("abc") begins ba7816bf8f01cfea.
        assert_eq!(super::short(&[b"a", b"bc"]), "ba7816bf8f01cfea");
        assert_eq!(super::short(&[b"abc"]).len(), 16);
    }
}
