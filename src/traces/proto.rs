//! The OTLP protobuf messages floodgate sends, written straight from its own
//! records. The SDK's path (spans as `SpanData`, converted to the generated proto
//! structs, then prost computing each nested length again at every level) cost about
//! 13k instructions a span; here each field is written once and a nested message's
//! length is patched in after it (`benches/tracing_cost.sh`).

/// Field numbers of the messages written here (opentelemetry-proto, trace/v1, common/v1).
pub mod field {
    pub const REQUEST_RESOURCE_SPANS: u32 = 1;
    pub const RESOURCE_SPANS_RESOURCE: u32 = 1;
    pub const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
    pub const RESOURCE_ATTRIBUTES: u32 = 1;
    pub const SCOPE_SPANS_SCOPE: u32 = 1;
    pub const SCOPE_SPANS_SPANS: u32 = 2;
    pub const SCOPE_NAME: u32 = 1;
    pub const SCOPE_VERSION: u32 = 2;
    pub const SPAN_TRACE_ID: u32 = 1;
    pub const SPAN_SPAN_ID: u32 = 2;
    pub const SPAN_PARENT_SPAN_ID: u32 = 4;
    pub const SPAN_NAME: u32 = 5;
    pub const SPAN_KIND: u32 = 6;
    pub const SPAN_START: u32 = 7;
    pub const SPAN_END: u32 = 8;
    pub const SPAN_ATTRIBUTES: u32 = 9;
    pub const SPAN_EVENTS: u32 = 11;
    pub const SPAN_LINKS: u32 = 13;
    pub const SPAN_STATUS: u32 = 15;
    pub const SPAN_FLAGS: u32 = 16;
    pub const EVENT_TIME: u32 = 1;
    pub const EVENT_NAME: u32 = 2;
    pub const EVENT_ATTRIBUTES: u32 = 3;
    pub const LINK_TRACE_ID: u32 = 1;
    pub const LINK_SPAN_ID: u32 = 2;
    pub const LINK_FLAGS: u32 = 6;
    pub const STATUS_MESSAGE: u32 = 2;
    pub const STATUS_CODE: u32 = 3;
}

pub const KIND_SERVER: u64 = 2;
pub const KIND_CLIENT: u64 = 3;
pub const STATUS_ERROR: u64 = 2;
/// `SpanFlags`: the W3C flags (sampled) plus "the parent's remoteness is known" (bit 8),
/// and "the parent is remote" (bit 9).
pub const FLAGS_SAMPLED_LOCAL_PARENT: u32 = 0x101;
pub const FLAGS_SAMPLED_REMOTE_PARENT: u32 = 0x301;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field) << 3 | u64::from(wire));
}

pub fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    key(out, field, LEN);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

pub fn string(out: &mut Vec<u8>, field: u32, value: &str) {
    bytes(out, field, value.as_bytes());
}

pub fn uint(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, VARINT);
    varint(out, value);
}

pub fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, FIXED64);
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn fixed32(out: &mut Vec<u8>, field: u32, value: u32) {
    key(out, field, FIXED32);
    out.extend_from_slice(&value.to_le_bytes());
}

/// A nested message: its body is written in place and its length put before it
/// (one byte is reserved; a longer length moves the body once).
pub fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let at = out.len();
    out.push(0);
    body(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
    } else {
        let mut prefix = Vec::with_capacity(10);
        varint(&mut prefix, len as u64);
        out[at] = prefix[0];
        out.splice(at + 1..at + 1, prefix[1..].iter().copied());
    }
}

/// Attribute values, as `AnyValue` writes them.
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
}

/// A `KeyValue` attribute.
pub fn attribute(out: &mut Vec<u8>, field: u32, key: &str, value: Value<'_>) {
    message(out, field, |kv| {
        string(kv, 1, key);
        message(kv, 2, |any| match value {
            Value::Str(s) => string(any, 1, s),
            Value::Bool(b) => uint(any, 2, u64::from(b)),
            Value::Int(i) => uint(any, 3, i as u64),
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_written_as_protobuf_wants() {
        let mut out = Vec::new();
        uint(&mut out, 1, 300);
        assert_eq!(out, [0x08, 0xac, 0x02]);
        out.clear();
        string(&mut out, 2, "hi");
        assert_eq!(out, [0x12, 2, b'h', b'i']);
        out.clear();
        fixed64(&mut out, 7, 1);
        assert_eq!(out, [0x39, 1, 0, 0, 0, 0, 0, 0, 0]);
        out.clear();
        attribute(&mut out, 9, "k", Value::Int(-1));
        // KeyValue { key: "k", value: AnyValue { int_value: -1 (ten bytes) } }
        assert_eq!(&out[..6], [0x4a, 16, 0x0a, 1, b'k', 0x12]);
        assert_eq!(out.len(), 18);
    }

    #[test]
    fn a_long_nested_message_gets_its_whole_length() {
        let mut out = Vec::new();
        message(&mut out, 1, |m| bytes(m, 2, &[7u8; 300]));
        // tag, length 303 as two bytes, then the body's own tag and length.
        assert_eq!(&out[..3], [0x0a, 0xaf, 0x02]);
        assert_eq!(&out[3..6], [0x12, 0xac, 0x02]);
        assert_eq!(out.len(), 3 + 303);
    }
}
