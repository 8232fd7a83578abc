//! W3C trace context (`traceparent`): reading a caller's, writing ours.

use crate::vocab::hex::write_hex;
use http::HeaderValue;

pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// A caller's span, as its `traceparent` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remote {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

/// Reads a `traceparent` (version 00, or a later one read as 00 would be); anything
/// malformed is no parent at all, as the W3C spec asks.
pub fn parse(value: &[u8]) -> Option<Remote> {
    let fixed = value.get(..55)?;
    if fixed[2] != b'-' || fixed[35] != b'-' || fixed[52] != b'-' {
        return None;
    }
    let version = hex(&fixed[..2])?;
    // Version ff is invalid; 00 is exactly 55 bytes; a later version may carry more after a dash.
    if version == 0xff || (version == 0 && value.len() != 55) || (value.len() > 55 && value[55] != b'-') {
        return None;
    }
    let trace_id = hex(&fixed[3..35])?;
    let span_id = hex(&fixed[36..52])? as u64;
    let flags = hex(&fixed[53..55])?;
    (trace_id != 0 && span_id != 0).then_some(Remote {
        trace_id,
        span_id,
        sampled: flags & 1 == 1,
    })
}

/// Lower-case hex only (the spec's), at most 32 digits.
fn hex(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u128::from(v))
    })
}

/// `00-<trace>-<span>-<flags>`, written into a stack buffer.
pub fn traceparent(trace_id: u128, span_id: u64, sampled: bool) -> HeaderValue {
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    write_hex(&mut out[3..35], trace_id);
    out[35] = b'-';
    write_hex(&mut out[36..52], u128::from(span_id));
    out[52..].copy_from_slice(if sampled { b"-01" } else { b"-00" });
    HeaderValue::from_bytes(&out).expect("hex digits and dashes are a valid header value")
}

/// A random id that is never the invalid all-zero one.
pub fn new_trace_id() -> u128 {
    fastrand::u128(1..)
}

pub fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let remote = parse(SAMPLE.as_bytes()).expect("valid");
        assert_eq!(remote.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(remote.span_id, 0x00f067aa0ba902b7);
        assert!(remote.sampled);
        assert_eq!(traceparent(remote.trace_id, remote.span_id, true), SAMPLE);
        assert_eq!(
            traceparent(1, 2, false),
            "00-00000000000000000000000000000001-0000000000000002-00"
        );
    }

    #[test]
    fn malformed_or_invalid_parents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
        // A later version is read as version 00, its extra fields after a dash ignored.
        assert!(parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-future").is_some());
        assert!(parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00future").is_none());
    }
}
