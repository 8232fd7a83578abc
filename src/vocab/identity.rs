//! Who is calling and in which tier: what authentication produces and what
//! limits, headers and logs read.

use super::ids::TierId;
use http::{HeaderName, HeaderValue};
use std::sync::Arc;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Identity {
    pub consumer: Arc<str>,
    /// The consumer id as the `X-Consumer-Id` value, built with the identity.
    pub consumer_header: HeaderValue,
    pub tier: TierId,
    /// `claims_to_headers` values for the upstream.
    pub headers: Arc<[(HeaderName, HeaderValue)]>,
}

impl Identity {
    /// Consumer ids are checked (`consumer_id::check`) where they are read (config,
    /// admin API, token claims); any other byte is sent as it is, as HTTP allows.
    pub fn new(consumer: Arc<str>, tier: TierId, headers: Arc<[(HeaderName, HeaderValue)]>) -> Self {
        let consumer_header =
            HeaderValue::from_bytes(consumer.as_bytes()).unwrap_or(HeaderValue::from_static("invalid"));
        Identity {
            consumer,
            consumer_header,
            tier,
            headers,
        }
    }
}
