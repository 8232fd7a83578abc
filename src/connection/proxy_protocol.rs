//! The HAProxy PROXY protocol (v1 text, v2 binary; haproxy's doc/proxy-protocol.txt) that a TCP
//! load balancer sends before any other byte, a TLS ClientHello included, to pass on the client's
//! address. `parse` works over a buffer; `read_header` takes exactly the header off a stream and
//! leaves what follows (TLS, HTTP) unread. A v2 header may be up to 64 KiB, as HAProxy allows:
//! its TLVs (SSL details, unique ids, a cloud's endpoint ids) are read past and never kept.

use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 line, CRLF included: "PROXY UNKNOWN", two full IPv6 addresses, two ports.
const V1_MAX: usize = 107;
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version/command, family/transport, length.
const V2_FIXED: usize = 16;
/// A whole v2 header fits in 64 KiB, as in HAProxy; the length field could claim a little more.
const V2_MAX_BODY: usize = 64 * 1024 - V2_FIXED;
/// The longest v2 address block (TCP over IPv6); what follows it in the body is TLVs.
const V2_ADDRESSES_MAX: usize = 36;
/// What `read_header` holds at once: a v1 line, or a v2 header up to its addresses.
const READ_BUF: usize = V1_MAX;
const _: () = assert!(V2_FIXED + V2_ADDRESSES_MAX <= READ_BUF);

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The balancer's own connection (v1 `UNKNOWN`, v2 `LOCAL`, or a v2 family other than TCP over
    /// IPv4/IPv6): keep the socket's addresses.
    Local,
    /// A proxied TCP connection: the client's address and the address it connected to.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
}

/// Why a connection's PROXY header was refused; the connection should be closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyHeaderError {
    #[error("the connection does not start with a PROXY protocol header")]
    NotProxyProtocol,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    #[error("PROXY protocol v2 header longer than {} bytes", V2_FIXED + V2_MAX_BODY)]
    TooLong,
    /// The kind only, so that the error stays comparable; mostly `UnexpectedEof`.
    #[error("reading the PROXY protocol header: {0}")]
    Io(std::io::ErrorKind),
}

use ProxyHeaderError::{Malformed, NotProxyProtocol};

/// Parses a header at the start of `buf`: `Ok(None)` when more bytes are needed,
/// `Ok(Some((header, length)))` once the header's addresses are in, `length` being the whole
/// header's (a v2 header's TLVs may follow beyond `buf`).
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    match buf.first() {
        None => Ok(None),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(NotProxyProtocol),
    }
}

/// Reads exactly one header from `io` and returns it. Never reads a byte past the header, so a TLS
/// handshake or an HTTP request can follow on the same stream.
pub async fn read_header<S: AsyncRead + Unpin>(io: &mut S) -> Result<ProxyHeader, ProxyHeaderError> {
    let mut buf = [0u8; READ_BUF];
    let mut have = 0;
    loop {
        if let Some((header, length)) = parse(&buf[..have])? {
            // The v2 TLVs past the addresses: read through, a buffer at a time.
            let mut left = length - have;
            while left > 0 {
                let n = left.min(buf.len());
                io.read_exact(&mut buf[..n])
                    .await
                    .map_err(|e| ProxyHeaderError::Io(e.kind()))?;
                left -= n;
            }
            return Ok(header);
        }
        // Only as far as the header surely reaches. `parse` has rejected a v1 line without CRLF
        // in 107 bytes, and a v2 header is read here up to its addresses, so `want` stays
        // within `buf`.
        let want = match have {
            // One byte first, so that anything else is rejected without waiting for more.
            0 => 1,
            // Both forms are longer than 8 bytes.
            1..8 => 8,
            _ if buf[0] == b'\r' && have < V2_FIXED => V2_FIXED,
            _ if buf[0] == b'\r' => {
                V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]])).min(V2_ADDRESSES_MAX)
            }
            // v1 is the legacy text form with no length: byte by byte up to the CRLF is fine.
            _ => have + 1,
        };
        io.read_exact(&mut buf[have..want])
            .await
            .map_err(|e| ProxyHeaderError::Io(e.kind()))?;
        have = want;
    }
}

/// Rejects `buf` as soon as a byte it has differs from the signature.
fn check_signature(buf: &[u8], signature: &[u8]) -> Result<(), ProxyHeaderError> {
    let n = buf.len().min(signature.len());
    if buf[..n] == signature[..n] {
        Ok(())
    } else {
        Err(NotProxyProtocol)
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    check_signature(buf, V1_PREFIX)?;
    let Some(lf) = buf[..buf.len().min(V1_MAX)].iter().position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Err(Malformed("v1 line has no CRLF within 107 bytes"));
        }
        return Ok(None);
    };
    // The prefix holds no LF, so `lf` is past it; the spec forbids a bare LF as the line end.
    if buf[lf - 1] != b'\r' {
        return Err(Malformed("v1 line does not end with CRLF"));
    }
    let mut fields = buf[V1_PREFIX.len()..lf - 1].split(|&b| b == b' ');
    let ip: fn(&str) -> Option<IpAddr> = match fields.next() {
        // The spec has receivers ignore whatever follows UNKNOWN.
        Some(b"UNKNOWN") => return Ok(Some((ProxyHeader::Local, lf + 1))),
        Some(b"TCP4") => |s| s.parse().ok().map(IpAddr::V4),
        Some(b"TCP6") => |s| s.parse().ok().map(IpAddr::V6),
        _ => return Err(Malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let fields: Vec<&str> = fields
        .map(std::str::from_utf8)
        .collect::<Result<_, _>>()
        .map_err(|_| Malformed("v1 line is not text"))?;
    // A doubled or trailing space shows up here as an extra, empty field.
    let [src, dst, sport, dport] = fields[..] else {
        return Err(Malformed(
            "v1 line needs four fields after the protocol, one space apart",
        ));
    };
    let addr = |ip_text: &str, port_text: &str| {
        let ip = ip(ip_text).ok_or(Malformed("v1 address is not one of the protocol's family"))?;
        Ok(SocketAddr::new(ip, v1_port(port_text)?))
    };
    let header = ProxyHeader::Proxied {
        source: addr(src, sport)?,
        destination: addr(dst, dport)?,
    };
    Ok(Some((header, lf + 1)))
}

fn v1_port(s: &str) -> Result<u16, ProxyHeaderError> {
    // `u16::from_str` would take "+80"; the spec wants bare digits, no heading zero (octal confusion).
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return Err(Malformed(
            "v1 port is not a decimal number without heading zeroes",
        ));
    }
    s.parse().map_err(|_| Malformed("v1 port is above 65535"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    check_signature(buf, V2_SIGNATURE)?;
    let Some(fixed) = buf.get(..V2_FIXED) else {
        return Ok(None);
    };
    if fixed[12] >> 4 != 2 {
        return Err(Malformed("v2 version is not 2"));
    }
    let local = match fixed[12] & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Malformed("v2 command is neither LOCAL nor PROXY")),
    };
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > V2_MAX_BODY {
        return Err(ProxyHeaderError::TooLong);
    }
    let family: Option<(usize, AddressBlock)> = match fixed[13] {
        // LOCAL: the balancer's own connection (health checks); the spec says ignore the block.
        _ if local => None,
        0x11 => Some((12, v2_addresses::<4>)),
        0x21 => Some((V2_ADDRESSES_MAX, v2_addresses::<16>)),
        // UNSPEC, UDP, UNIX: nothing to stand in for a TCP peer, so the socket's addresses stay.
        _ => None,
    };
    let Some((block_len, addresses)) = family else {
        return Ok(Some((ProxyHeader::Local, V2_FIXED + len)));
    };
    let Some(block) = buf.get(V2_FIXED..V2_FIXED + block_len.min(len)) else {
        return Ok(None);
    };
    Ok(Some((addresses(block)?, V2_FIXED + len)))
}

type AddressBlock = fn(&[u8]) -> Result<ProxyHeader, ProxyHeaderError>;

/// Source and destination from a v2 address block of `N`-byte addresses then two ports.
fn v2_addresses<const N: usize>(body: &[u8]) -> Result<ProxyHeader, ProxyHeaderError>
where
    IpAddr: From<[u8; N]>,
{
    let short = || Malformed("v2 address block shorter than its family needs");
    let (src, rest) = body.split_first_chunk::<N>().ok_or_else(short)?;
    let (dst, rest) = rest.split_first_chunk::<N>().ok_or_else(short)?;
    let (ports, _tlvs) = rest.split_first_chunk::<4>().ok_or_else(short)?;
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(IpAddr::from(*src), u16::from_be_bytes([ports[0], ports[1]])),
        destination: SocketAddr::new(IpAddr::from(*dst), u16::from_be_bytes([ports[2], ports[3]])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;
    use tokio::io::AsyncWriteExt;

    fn proxied(source: &str, destination: &str) -> ProxyHeader {
        ProxyHeader::Proxied {
            source: source.parse().expect("source"),
            destination: destination.parse().expect("destination"),
        }
    }

    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.extend([ver_cmd, fam]);
        out.extend(u16::try_from(body.len()).expect("body length").to_be_bytes());
        out.extend(body);
        out
    }

    const V4_BODY: &[u8] = &[192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x01, 0xbb];
    const ALPN_TLV: &[u8] = &[0x01, 0x00, 0x02, b'h', b'2'];

    #[test]
    fn v1_tcp4_tcp6_unknown() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
        let with_tls = [&line[..], &[0x16, 0x03, 0x01]].concat();
        let want = proxied("192.0.2.1:56324", "198.51.100.2:443");
        assert_eq!(parse(&with_tls), Ok(Some((want, line.len()))));
        let line = b"PROXY TCP6 2001:db8::1 ::1 0 65535\r\n";
        let want = proxied("[2001:db8::1]:0", "[::1]:65535");
        assert_eq!(parse(line), Ok(Some((want, line.len()))));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(Some((ProxyHeader::Local, 15))));
        let long = b"PROXY UNKNOWN ::1 ::2 1 2\r\nGET";
        assert_eq!(parse(long), Ok(Some((ProxyHeader::Local, long.len() - 3))));
    }

    #[test]
    fn partial_headers_need_more() {
        let v1 = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
        let binary = v2(0x21, 0x11, &[V4_BODY, ALPN_TLV].concat());
        // A v2 header says all it has to say once its addresses are in.
        let addresses_end = 16 + V4_BODY.len();
        for (whole, needed) in [(&v1[..], v1.len()), (&binary, addresses_end)] {
            for n in 0..needed {
                assert_eq!(parse(&whole[..n]), Ok(None), "{n} bytes of {whole:?}");
            }
        }
        let want = proxied("192.0.2.1:56324", "198.51.100.2:443");
        assert_eq!(parse(&binary[..addresses_end]), Ok(Some((want, binary.len()))));
    }

    #[test]
    fn v1_malformed() {
        let too_long = [&b"PROXY UNKNOWN "[..], &[b'a'; 100]].concat();
        let lines: [&[u8]; 12] = [
            b"PROXY TCP4 192.0.2.300 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 ::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP6 ::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 70000\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 01 2\r\n",
            b"PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
            &too_long,
        ];
        assert_eq!(parse(&too_long[..106]), Ok(None));
        for line in lines {
            assert!(
                matches!(parse(line), Err(Malformed(_))),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn v2_proxy_local_unspec() {
        let whole = v2(0x21, 0x11, &[V4_BODY, ALPN_TLV].concat());
        let with_tls = [&whole[..], &[0x16, 0x03]].concat();
        let want = proxied("192.0.2.1:56324", "198.51.100.2:443");
        assert_eq!(parse(&with_tls), Ok(Some((want, whole.len()))));

        let (src, dst) = (
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
        );
        let body = [&src.octets()[..], &dst.octets(), &[0x30, 0x39, 0x01, 0xbb]].concat();
        let whole = v2(0x21, 0x21, &[&body[..], ALPN_TLV].concat());
        let want = proxied("[::1]:12345", "[2001:db8::2]:443");
        assert_eq!(parse(&whole), Ok(Some((want, whole.len()))));

        // LOCAL ignores whatever block follows; UNSPEC, UDP and UNIX keep the socket's addresses.
        let cases: [(u8, u8, &[u8]); 4] = [
            (0x20, 0x11, V4_BODY),
            (0x20, 0, &[]),
            (0x21, 0, &[]),
            (0x21, 0x12, V4_BODY),
        ];
        for (ver_cmd, fam, body) in cases {
            let want = Ok(Some((ProxyHeader::Local, 16 + body.len())));
            assert_eq!(parse(&v2(ver_cmd, fam, body)), want);
        }
    }

    #[test]
    fn v2_errors() {
        assert!(matches!(parse(&v2(0x11, 0x11, V4_BODY)), Err(Malformed(_))));
        assert!(matches!(parse(&v2(0x22, 0x11, V4_BODY)), Err(Malformed(_))));
        assert!(matches!(parse(&v2(0x21, 0x11, &V4_BODY[..8])), Err(Malformed(_))));
        // Over 64 KiB in all: refused on the fixed part alone, before any of the body arrives.
        let mut fixed = v2(0x21, 0x11, &[]);
        fixed[14..16].copy_from_slice(&u16::try_from(V2_MAX_BODY + 1).expect("a length").to_be_bytes());
        assert_eq!(parse(&fixed), Err(ProxyHeaderError::TooLong));
        let largest = v2(0x21, 0x11, &[0; 64 * 1024 - 16]);
        assert_eq!(
            parse(&largest).map(|h| h.map(|(_, len)| len)),
            Ok(Some(64 * 1024))
        );
    }

    #[test]
    fn not_proxy_protocol_from_first_bytes() {
        let starts: [&[u8]; 6] = [b"GET ", &[0x16], &[0x16, 3, 1], b"PO", b"\r\n\r\nX", b"PROXY\r\n"];
        for start in starts {
            assert_eq!(parse(start), Err(NotProxyProtocol), "{start:?}");
        }
    }

    #[tokio::test]
    async fn read_header_leaves_the_rest_unread() {
        let mut io: &[u8] = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n";
        let header = read_header(&mut io).await;
        assert_eq!(header, Ok(proxied("192.0.2.1:56324", "198.51.100.2:443")));
        assert_eq!(io, b"GET / HTTP/1.1\r\n\r\n");

        let (mut client, mut server) = tokio::io::duplex(4096);
        let header = v2(0x21, 0x21, &[&[0u8; 36][..], ALPN_TLV].concat());
        let input = [&header[..], b"GET / HTTP/1.1\r\n\r\n"].concat();
        client.write_all(&input).await.expect("write");
        drop(client);
        assert_eq!(read_header(&mut server).await, Ok(proxied("[::]:0", "[::]:0")));
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn read_header_reads_through_large_tlvs_and_no_further() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let tlvs = [&[0x04, 0x20, 0x00][..], &[7; 0x2000]].concat();
        let header = v2(0x21, 0x11, &[V4_BODY, &tlvs].concat());
        let input = [&header[..], b"GET / HTTP/1.1\r\n\r\n"].concat();
        let writer = tokio::spawn(async move {
            client.write_all(&input).await.expect("write");
        });
        assert_eq!(
            read_header(&mut server).await,
            Ok(proxied("192.0.2.1:56324", "198.51.100.2:443"))
        );
        writer.await.expect("writer");
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");

        // A header cut short in its TLVs is an error, not a header.
        let mut io: &[u8] = &header[..header.len() - 1];
        let eof = Err(ProxyHeaderError::Io(std::io::ErrorKind::UnexpectedEof));
        assert_eq!(read_header(&mut io).await, eof);
    }

    #[tokio::test]
    async fn read_header_fails_fast_and_on_eof() {
        // The sender stays open: a TLS first byte must be refused without waiting for more.
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&[0x16]).await.expect("write");
        let header = tokio::time::timeout(std::time::Duration::from_secs(5), read_header(&mut server)).await;
        assert_eq!(header, Ok(Err(NotProxyProtocol)));

        let mut io: &[u8] = b"PROXY TCP4 192.0.2.1";
        let eof = Err(ProxyHeaderError::Io(std::io::ErrorKind::UnexpectedEof));
        assert_eq!(read_header(&mut io).await, eof);
    }
}
