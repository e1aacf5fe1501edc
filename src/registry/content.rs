//! Content addressing: the digest of a body is the sha256 of its bytes exactly as received.
//!
//! A manifest or blob fetched by digest is only as good as this check: registries, mirrors and
//! CDNs may all sit between us and the content, and a digest that matches makes any of them
//! trustworthy. The bytes are never re-serialized before hashing (JSON re-encoding changes them).

use sha2::{Digest as _, Sha256};

use crate::model::Digest;

/// The `sha256:` digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_bytes(Sha256::digest(bytes).into())
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the body has digest {actual}, not the {expected} asked for")]
pub struct Mismatch {
    /// The digest asked for.
    pub expected: Digest,
    /// The digest of what came.
    pub actual: Digest,
}

/// Checks that `bytes` are the content of `expected`.
pub fn verify(expected: &Digest, bytes: &[u8]) -> Result<(), Mismatch> {
    let actual = sha256(bytes);
    if actual == *expected {
        Ok(())
    } else {
        Err(Mismatch {
            expected: *expected,
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        // sha256 of the empty string and of "abc" (FIPS 180-2 test vector).
        let table = [
            (
                &b""[..],
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                &b"abc"[..],
                "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        for (bytes, want) in table {
            let want = Digest::parse(want).unwrap();
            assert_eq!(sha256(bytes), want);
            assert!(verify(&want, bytes).is_ok());
        }
        let err = verify(&sha256(b"abc"), b"abd").unwrap_err();
        assert_eq!(err.expected, sha256(b"abc"));
        assert_eq!(err.actual, sha256(b"abd"));
    }
}
