//! The status a request that failed to proxy is answered with, from Pingora's
//! error: its own HTTP status if it carries one, 504 for an upstream timeout, 502
//! for another upstream fault, 408 for a request body too slow, 400 for another
//! client fault, 500 for the gateway's own, and 0 (nothing can be written) when
//! the client's connection is broken.

use pingora_error::{Error, ErrorSource, ErrorType};

pub fn status(e: &Error) -> u16 {
    match e.etype() {
        ErrorType::HTTPStatus(code) => *code,
        ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
            if *e.esource() == ErrorSource::Upstream =>
        {
            504
        }
        _ => match e.esource() {
            ErrorSource::Upstream => 502,
            ErrorSource::Downstream => match e.etype() {
                // A request body too slow for client.min_receive_rate_bps.
                ErrorType::ReadTimedout => 408,
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                _ => 400,
            },
            ErrorSource::Internal | ErrorSource::Unset => 500,
        },
    }
}

/// What failed, in a few stable words, for a span's `error.type`; `None` for an
/// answer the gateway chose (its status names it, as the conventions ask).
pub fn error_type(e: &Error) -> Option<&'static str> {
    Some(match e.etype() {
        ErrorType::ConnectTimedout => "connect_timeout",
        ErrorType::ConnectRefused => "connection_refused",
        ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::SocketError
        | ErrorType::BindError => "connect_error",
        ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => "tls_error",
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => "timeout",
        ErrorType::ConnectionClosed => "connection_closed",
        ErrorType::ReadError | ErrorType::WriteError => "io_error",
        ErrorType::InvalidHTTPHeader | ErrorType::H1Error | ErrorType::H2Error | ErrorType::InvalidH2 => {
            "protocol_error"
        }
        ErrorType::HTTPStatus(_) => return None,
        _ => "internal_error",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(etype: ErrorType, source: ErrorSource) -> Box<Error> {
        let mut e = Error::new(etype);
        e.esource = source;
        e
    }

    #[test]
    fn each_fault_gets_its_status() {
        use ErrorSource::{Downstream, Internal, Upstream};
        let cases = [
            (ErrorType::HTTPStatus(503), Internal, 503),
            (ErrorType::ReadTimedout, Upstream, 504),
            (ErrorType::ConnectTimedout, Upstream, 504),
            (ErrorType::ConnectRefused, Upstream, 502),
            (ErrorType::ReadTimedout, Downstream, 408),
            (ErrorType::ConnectionClosed, Downstream, 0),
            (ErrorType::InvalidHTTPHeader, Downstream, 400),
            (ErrorType::InternalError, Internal, 500),
        ];
        for (etype, source, expected) in cases {
            let e = from(etype.clone(), source.clone());
            assert_eq!(status(&e), expected, "{etype:?} from {source:?}");
        }
    }
}
