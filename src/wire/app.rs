//! What travels inside messages (reassembled from fragments): the payload formats of the
//! tags, query and response channels. Application data (channel 0) is the application's
//! own bytes. Big-endian, lengths checked before reading, like the datagrams.
//!
//! ```text
//! tags:     base u64 | version u64 | flags u8 | count u16 | entries...
//!           entry: key_len u8 | key | op u8 (0 removed, 1 set) | [value_len u16 | value]
//! query:    query u64 | timeout_ms u32 | data...
//! response: query u64 | flags u8 (bit 0: an error response) | data...
//! ```

use crate::wire::packet::DecodeError;

/// Which kind of message a fragment belongs to (its `channel` byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Channel {
    /// The application's own bytes.
    Data = 0,
    /// A change of the sender's tags ([`TagDelta`]).
    Tags = 1,
    /// A question to the receiver ([`QueryHeader`] and the question).
    Query = 2,
    /// An answer to a query the receiver asked ([`ResponseHeader`] and the answer).
    Response = 3,
}

impl Channel {
    /// The channel of a channel byte; `None` for one this version does not define.
    pub fn from_byte(byte: u8) -> Option<Channel> {
        match byte {
            0 => Some(Channel::Data),
            1 => Some(Channel::Tags),
            2 => Some(Channel::Query),
            3 => Some(Channel::Response),
            _ => None,
        }
    }
}

/// One key's change in a [`TagDelta`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagChange<'a> {
    /// The key (1 to 255 bytes of UTF-8).
    pub key: &'a str,
    /// Its new value; `None`: the key was removed.
    pub value: Option<&'a str>,
}

/// A change of the sender's tags from version `base` (which the receiver holds) to
/// `version`; `full`: the whole map, replacing whatever the receiver holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagDelta<'a> {
    /// The version the change applies to (0: an empty map).
    pub base: u64,
    /// The version after it.
    pub version: u64,
    /// The changes are the whole map: the receiver drops keys not listed.
    pub full: bool,
    /// The keys changed since `base`.
    pub changes: Vec<TagChange<'a>>,
}

const TAGS_FULL: u8 = 0x01;

impl<'a> TagDelta<'a> {
    /// Appends the encoding to `out`. Keys longer than 255 bytes and values longer than
    /// 65,535 bytes are refused by the tag rules before they get here; they are cut.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.base.to_be_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(if self.full { TAGS_FULL } else { 0 });
        out.extend_from_slice(
            &(self.changes.len().min(usize::from(u16::MAX)) as u16).to_be_bytes(),
        );
        for change in self.changes.iter().take(usize::from(u16::MAX)) {
            let key = &change.key.as_bytes()[..change.key.len().min(255)];
            out.push(key.len() as u8);
            out.extend_from_slice(key);
            match change.value {
                None => out.push(0),
                Some(value) => {
                    let value = &value.as_bytes()[..value.len().min(usize::from(u16::MAX))];
                    out.push(1);
                    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
                    out.extend_from_slice(value);
                }
            }
        }
    }

    /// Decodes a tags message; every length and string is checked.
    pub fn parse(bytes: &'a [u8]) -> Result<TagDelta<'a>, DecodeError> {
        let mut r = Reader::new(bytes);
        let base = r.u64()?;
        let version = r.u64()?;
        let flags = r.u8()?;
        if flags & !TAGS_FULL != 0 {
            return Err(DecodeError::BadField("tags flags"));
        }
        let count = r.u16()?;
        // Each change takes at least 3 bytes: a bound before allocating for them.
        if usize::from(count) * 3 > r.left() {
            return Err(DecodeError::BadField("tags count"));
        }
        let mut changes = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let key_len = usize::from(r.u8()?);
            let key = r.text(key_len, "tag key")?;
            if key.is_empty() {
                return Err(DecodeError::BadField("tag key"));
            }
            let value = match r.u8()? {
                0 => None,
                1 => {
                    let len = usize::from(r.u16()?);
                    Some(r.text(len, "tag value")?)
                }
                _ => return Err(DecodeError::BadField("tag op")),
            };
            changes.push(TagChange { key, value });
        }
        r.finish()?;
        Ok(TagDelta {
            base,
            version,
            full: flags & TAGS_FULL != 0,
            changes,
        })
    }
}

/// What opens a query message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryHeader {
    /// The asker's number for the query.
    pub query: u64,
    /// How long the asker waits for answers, in milliseconds: an answer later than that is
    /// not worth computing.
    pub timeout_ms: u32,
}

/// Length of a [`QueryHeader`].
pub const QUERY_HEADER_LEN: usize = 12;

impl QueryHeader {
    /// Appends the header to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.query.to_be_bytes());
        out.extend_from_slice(&self.timeout_ms.to_be_bytes());
    }

    /// The header and the question after it.
    pub fn parse(bytes: &[u8]) -> Result<(QueryHeader, &[u8]), DecodeError> {
        let mut r = Reader::new(bytes);
        let header = QueryHeader {
            query: r.u64()?,
            timeout_ms: r.u32()?,
        };
        Ok((header, r.rest()))
    }
}

/// What opens a response message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHeader {
    /// The asker's number of the query answered.
    pub query: u64,
    /// The responder could not answer; the data says why.
    pub error: bool,
}

/// Length of a [`ResponseHeader`].
pub const RESPONSE_HEADER_LEN: usize = 9;

impl ResponseHeader {
    /// Appends the header to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.query.to_be_bytes());
        out.push(u8::from(self.error));
    }

    /// The header and the answer after it.
    pub fn parse(bytes: &[u8]) -> Result<(ResponseHeader, &[u8]), DecodeError> {
        let mut r = Reader::new(bytes);
        let query = r.u64()?;
        let error = match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::BadField("response flags")),
        };
        Ok((ResponseHeader { query, error }, r.rest()))
    }
}

/// Reads fields front to back, every read checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(DecodeError::Truncated {
                needed: self.at.saturating_add(n),
                got: self.bytes.len(),
            });
        };
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn text(&mut self, n: usize, what: &'static str) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::BadField(what))
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }

    fn finish(&self) -> Result<(), DecodeError> {
        match self.left() {
            0 => Ok(()),
            _ => Err(DecodeError::TrailingBytes {
                expected: self.at,
                got: self.bytes.len(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_deltas_round_trip_and_refuse_every_cut() {
        let delta = TagDelta {
            base: 3,
            version: 9,
            full: false,
            changes: vec![
                TagChange {
                    key: "role",
                    value: Some("db"),
                },
                TagChange {
                    key: "zone",
                    value: None,
                },
                TagChange {
                    key: "ünï",
                    value: Some(""),
                },
            ],
        };
        let mut bytes = Vec::new();
        delta.emit(&mut bytes);
        assert_eq!(TagDelta::parse(&bytes), Ok(delta));
        for cut in 0..bytes.len() {
            assert!(TagDelta::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        bytes.push(0);
        assert!(TagDelta::parse(&bytes).is_err());
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut bytes = vec![0u8; 17];
        bytes.extend_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(
            TagDelta::parse(&bytes),
            Err(DecodeError::BadField("tags count"))
        );
    }

    #[test]
    fn query_and_response_headers_round_trip() {
        let mut bytes = Vec::new();
        QueryHeader {
            query: 7,
            timeout_ms: 1500,
        }
        .emit(&mut bytes);
        bytes.extend_from_slice(b"uptime");
        let (header, rest) = QueryHeader::parse(&bytes).unwrap();
        assert_eq!(
            (header.query, header.timeout_ms, rest),
            (7, 1500, &b"uptime"[..])
        );
        assert!(QueryHeader::parse(&bytes[..11]).is_err());
        let mut bytes = Vec::new();
        ResponseHeader {
            query: 7,
            error: true,
        }
        .emit(&mut bytes);
        let (header, rest) = ResponseHeader::parse(&bytes).unwrap();
        assert!(header.error && rest.is_empty());
        bytes[8] = 2;
        assert!(ResponseHeader::parse(&bytes).is_err());
    }
}
