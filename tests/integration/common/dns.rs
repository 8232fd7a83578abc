//! A real DNS server on loopback (UDP and TCP, one thread each) whose answers the test
//! sets: A records for a name, NXDOMAIN, SERVFAIL, or silence; and AAAA records. The gateway's resolver is
//! pointed at it with `dns.nameservers`; the machine's resolver is never touched. An answer too
//! big for a UDP reply (as the question's EDNS size, else 512 bytes, allows) goes out with TC set
//! and no records, as a real server's would, so the resolver asks again over TCP.

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub enum DnsAnswer {
    Addrs(Vec<Ipv4Addr>),
    NxDomain,
    ServFail,
    /// No answer at all: the resolver times out.
    Silent,
}

/// A questions get the answer; AAAA questions get the name's IPv6 addresses.
#[derive(Default)]
struct Records {
    a: HashMap<String, DnsAnswer>,
    aaaa: HashMap<String, Vec<Ipv6Addr>>,
}

type Zone = Arc<Mutex<Records>>;

pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Zone,
    /// Questions asked so far (A and AAAA alike).
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    /// Listens on one port for UDP and TCP; unknown names get NXDOMAIN.
    pub fn start() -> DnsServer {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").expect("dns udp bind");
            let addr = udp.local_addr().expect("dns addr");
            if let Ok(tcp) = TcpListener::bind(addr) {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().expect("dns addr");
        super::ports::claim(addr.port());
        let server = DnsServer {
            addr,
            zone: Zone::default(),
            queries: Arc::default(),
            stop: Arc::default(),
        };
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let (zone, queries, stop) = (server.zone.clone(), server.queries.clone(), server.stop.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                queries.fetch_add(1, Ordering::SeqCst);
                if let Some(reply) = reply(&zone, &buf[..n], Transport::Udp) {
                    let _ = udp.send_to(&reply, peer);
                }
            }
        });
        let (zone, queries, stop) = (server.zone.clone(), server.queries.clone(), server.stop.clone());
        tcp.set_nonblocking(false).expect("blocking");
        thread::spawn(move || {
            for stream in tcp.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut query = vec![0u8; u16::from_be_bytes(len) as usize];
                if stream.read_exact(&mut query).is_err() {
                    continue;
                }
                queries.fetch_add(1, Ordering::SeqCst);
                if let Some(reply) = reply(&zone, &query, Transport::Tcp) {
                    let _ = stream.write_all(&(reply.len() as u16).to_be_bytes());
                    let _ = stream.write_all(&reply);
                }
            }
        });
        server
    }

    /// What `name` (as the gateway's config spells it) answers to A questions from now on.
    pub fn set(&self, name: &str, answer: DnsAnswer) {
        self.zone.lock().expect("zone").a.insert(fqdn(name), answer);
    }

    /// The AAAA records of `name`.
    pub fn set_aaaa(&self, name: &str, addrs: Vec<Ipv6Addr>) {
        self.zone.lock().expect("zone").aaaa.insert(fqdn(name), addrs);
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr); // wake the accept loop
    }
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Udp,
    Tcp,
}

fn reply(zone: &Zone, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let question = query.queries().first()?.clone();
    let name = question.name().to_ascii().to_ascii_lowercase();
    let (answer, v6) = {
        let zone = zone.lock().expect("zone");
        let known = zone.a.contains_key(&name) || zone.aaaa.contains_key(&name);
        let answer = match question.query_type() {
            // AAAA questions are answered whatever the A answer is set to.
            RecordType::AAAA if known => DnsAnswer::Addrs(vec![]),
            _ => zone.a.get(&name).cloned().unwrap_or(if known {
                DnsAnswer::Addrs(vec![])
            } else {
                DnsAnswer::NxDomain
            }),
        };
        (answer, zone.aaaa.get(&name).cloned().unwrap_or_default())
    };
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .add_query(question.clone());
    match answer {
        DnsAnswer::Silent => return None,
        DnsAnswer::NxDomain => {
            reply.set_response_code(ResponseCode::NXDomain);
        }
        DnsAnswer::ServFail => {
            reply.set_response_code(ResponseCode::ServFail);
        }
        DnsAnswer::Addrs(ips) if question.query_type() == RecordType::A => {
            for ip in ips {
                reply.add_answer(Record::from_rdata(question.name().clone(), 1, RData::A(A(ip))));
            }
        }
        DnsAnswer::Addrs(_) if question.query_type() == RecordType::AAAA => {
            for ip in v6 {
                reply.add_answer(Record::from_rdata(
                    question.name().clone(),
                    1,
                    RData::AAAA(AAAA(ip)),
                ));
            }
        }
        DnsAnswer::Addrs(_) => {}
    }
    let whole = reply.to_vec().ok()?;
    if transport == Transport::Tcp || whole.len() <= usize::from(query.max_payload()) {
        return Some(whole);
    }
    reply.take_answers();
    reply.set_truncated(true);
    reply.to_vec().ok()
}
