//! Identifiers with rules: a medium's hash and a blob's digest.
//!
//! Rules: both are lowercase hexadecimal on the wire; `Display` is the full value (the short
//! form is `short()`), so nothing that needs the whole identifier can get a truncated one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// The string has the wrong number of characters.
    #[error("{what} must be {expected} lowercase hex characters, got {actual}")]
    Length {
        /// Which identifier was parsed.
        what: &'static str,
        /// The required number of characters.
        expected: usize,
        /// The number of characters given.
        actual: usize,
    },
    /// The string contains a character other than `0-9a-f`.
    #[error("{what} must be lowercase hex (0-9, a-f)")]
    NotHex {
        /// Which identifier was parsed.
        what: &'static str,
    },
}

fn check_hex(what: &'static str, value: &str, expected: usize) -> Result<(), ParseIdError> {
    if value.len() != expected {
        return Err(ParseIdError::Length {
            what,
            expected,
            actual: value.len(),
        });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ParseIdError::NotHex { what });
    }
    Ok(())
}

/// The identity of a medium: the first 32 hex characters of BLAKE3 over
/// `SIZE:<bytes>|MODEL:<model>|SERIAL:<serial>|` followed by the first and last MiB
/// (compatible with the predecessor's v2 hash).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MediumHash(String);

impl MediumHash {
    /// Number of hex characters in a medium hash.
    pub const LEN: usize = 32;

    /// The full hash as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 characters, for tables meant for people. Never used to name anything.
    pub fn short(&self) -> &str {
        &self.0[..8]
    }
}

impl FromStr for MediumHash {
    type Err = ParseIdError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        check_hex("a medium hash", value, Self::LEN)?;
        Ok(Self(value.to_owned()))
    }
}

impl TryFrom<String> for MediumHash {
    type Error = ParseIdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        check_hex("a medium hash", &value, Self::LEN)?;
        Ok(Self(value))
    }
}

impl From<MediumHash> for String {
    fn from(value: MediumHash) -> Self {
        value.0
    }
}

impl fmt::Display for MediumHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity of a blob in the content store: the BLAKE3-256 digest of its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobId([u8; 32]);

impl BlobId {
    /// Number of hex characters in a blob id.
    pub const HEX_LEN: usize = 64;

    /// Wraps a 32-byte digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest bytes, as stored in the catalog.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The full lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex characters, for people.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl TryFrom<&[u8]> for BlobId {
    type Error = ParseIdError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        let digest: [u8; 32] = bytes.try_into().map_err(|_| ParseIdError::Length {
            what: "a blob id",
            expected: Self::HEX_LEN,
            actual: bytes.len() * 2,
        })?;
        Ok(Self(digest))
    }
}

impl FromStr for BlobId {
    type Err = ParseIdError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        check_hex("a blob id", value, Self::HEX_LEN)?;
        let mut digest = [0_u8; 32];
        hex::decode_to_slice(value, &mut digest)
            .map_err(|_| ParseIdError::NotHex { what: "a blob id" })?;
        Ok(Self(digest))
    }
}

impl TryFrom<String> for BlobId {
    type Error = ParseIdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<BlobId> for String {
    fn from(value: BlobId) -> Self {
        value.to_hex()
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medium_hash_accepts_32_lowercase_hex() {
        let hash: MediumHash = "0123456789abcdef0123456789abcdef".parse().unwrap();
        assert_eq!(hash.short(), "01234567");
        assert_eq!(hash.to_string(), "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn medium_hash_rejects_uppercase_short_and_long_values() {
        assert_eq!(
            "0123456789ABCDEF0123456789abcdef".parse::<MediumHash>(),
            Err(ParseIdError::NotHex {
                what: "a medium hash"
            })
        );
        assert!(matches!(
            "0123".parse::<MediumHash>(),
            Err(ParseIdError::Length {
                expected: 32,
                actual: 4,
                ..
            })
        ));
        assert!(
            "0123456789abcdef0123456789abcdef0"
                .parse::<MediumHash>()
                .is_err()
        );
    }

    #[test]
    fn medium_hash_json_round_trip_validates() {
        let json = "\"0123456789abcdef0123456789abcdef\"";
        let hash: MediumHash = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&hash).unwrap(), json);
        assert!(serde_json::from_str::<MediumHash>("\"../etc/passwd\"").is_err());
    }

    #[test]
    fn blob_id_hex_round_trip() {
        let bytes: [u8; 32] = core::array::from_fn(|i| u8::try_from(i * 7).unwrap());
        let id = BlobId::from_bytes(bytes);
        let hex = id.to_hex();
        assert_eq!(hex.len(), BlobId::HEX_LEN);
        assert_eq!(hex.parse::<BlobId>().unwrap(), id);
        assert_eq!(id.short(), &hex[..8]);
        assert_eq!(BlobId::try_from(&bytes[..]).unwrap(), id);
        assert!(BlobId::try_from(&bytes[..31]).is_err());
    }
}
