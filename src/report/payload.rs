//! Application payloads in JSON: `"data"` when the bytes are valid UTF-8, else `"data_b64"`
//! (standard base64, with padding). The control protocol's requests and answers and the
//! `watch --json` records all carry payloads this way, so a shell script reads text as it
//! is and a program still gets arbitrary bytes through.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A payload as two optional JSON fields: exactly one of them is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadFields {
    /// The payload as text, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The payload in standard base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_b64: Option<String>,
}

/// Why the payload fields of a message could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// Neither `data` nor `data_b64` was given.
    Missing,
    /// Both were given: which one is meant?
    Both,
    /// `data_b64` is not standard base64 (the decoder's words).
    BadBase64(String),
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadError::Missing => f.write_str("no payload: give \"data\" or \"data_b64\""),
            PayloadError::Both => f.write_str("give \"data\" or \"data_b64\", not both"),
            PayloadError::BadBase64(why) => {
                write!(f, "\"data_b64\" is not standard base64: {why}")
            }
        }
    }
}

impl std::error::Error for PayloadError {}

impl PayloadFields {
    /// `bytes` as `data` when they are UTF-8, else as `data_b64`.
    pub fn from_bytes(bytes: &[u8]) -> PayloadFields {
        match std::str::from_utf8(bytes) {
            Ok(text) => PayloadFields {
                data: Some(text.to_owned()),
                data_b64: None,
            },
            Err(_) => PayloadFields {
                data: None,
                data_b64: Some(STANDARD.encode(bytes)),
            },
        }
    }

    /// `bytes` always as `data_b64` (for a request whose text, JSON-escaped, would be too
    /// long: base64 grows by a third at most, escaping by up to six times).
    pub fn base64(bytes: &[u8]) -> PayloadFields {
        PayloadFields {
            data: None,
            data_b64: Some(STANDARD.encode(bytes)),
        }
    }

    /// The bytes: exactly one of the two fields must be set.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PayloadError> {
        match (&self.data, &self.data_b64) {
            (Some(text), None) => Ok(text.as_bytes().to_vec()),
            (None, Some(b64)) => STANDARD
                .decode(b64)
                .map_err(|e| PayloadError::BadBase64(e.to_string())),
            (None, None) => Err(PayloadError::Missing),
            (Some(_), Some(_)) => Err(PayloadError::Both),
        }
    }

    /// The bytes, or an empty payload when neither field is set (a response may be empty).
    pub fn to_bytes_or_empty(&self) -> Result<Vec<u8>, PayloadError> {
        match self.to_bytes() {
            Err(PayloadError::Missing) => Ok(Vec::new()),
            other => other,
        }
    }
}

/// `bytes` in standard base64 (for environment variables and the like).
pub fn to_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_stays_text_and_bytes_go_as_base64() {
        let text = PayloadFields::from_bytes("héllo".as_bytes());
        assert_eq!(text.data.as_deref(), Some("héllo"));
        assert_eq!(text.to_bytes().unwrap(), "héllo".as_bytes());
        let bytes = PayloadFields::from_bytes(&[0xff, 0x00, 0x01]);
        assert_eq!(bytes.data_b64.as_deref(), Some("/wAB"));
        assert_eq!(bytes.to_bytes().unwrap(), vec![0xff, 0x00, 0x01]);
        assert_eq!(
            serde_json::to_string(&bytes).unwrap(),
            r#"{"data_b64":"/wAB"}"#
        );
        let bad = PayloadFields {
            data: None,
            data_b64: Some("not base64!".to_owned()),
        };
        assert!(matches!(bad.to_bytes(), Err(PayloadError::BadBase64(_))));
        assert_eq!(
            PayloadFields::default().to_bytes(),
            Err(PayloadError::Missing)
        );
        assert_eq!(PayloadFields::default().to_bytes_or_empty(), Ok(vec![]));
    }
}
