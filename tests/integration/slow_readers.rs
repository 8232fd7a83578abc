//! Slow readers of a large response by the thousand: what the gateway holds for each stays
//! small enough for its memory limit, and a fast client still gets the whole body.

use crate::common::*;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

/// The large response: far more than the kernel and the gateway buffer for a reader.
const BODY: usize = 16 * 1024 * 1024;
const READERS: usize = 1000;
/// What the Kubernetes manifests allow the gateway.
const MEMORY_LIMIT: u64 = 384 * 1024 * 1024;
/// How long the readers may take for every one of them to have its response flowing.
const ALL_SERVED: Duration = Duration::from_secs(30);
/// Rounds of reading after that, before the gateway's memory is read.
const MORE_ROUNDS: usize = 4;

/// An upstream answering every request on a connection with `BODY` bytes, one thread per
/// connection (its writes block while the gateway does not read).
fn large_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve_large(stream));
        }
    });
    addr
}

fn serve_large(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut out = stream;
    let chunk = vec![b'x'; 64 * 1024];
    loop {
        // A request head: its lines up to the blank one.
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n");
        if out.write_all(head.as_bytes()).is_err() {
            return;
        }
        for _ in 0..BODY / chunk.len() {
            if out.write_all(&chunk).is_err() {
                return;
            }
        }
    }
}

fn set_int_option(stream: &impl AsRawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) {
    // SAFETY: the pointer and length describe `value`, a c_int.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt {name}: {}", std::io::Error::last_os_error());
}

/// A client with a small receive buffer and Ethernet's segment size (loopback's 64 KiB
/// segments would have the gateway's kernel, not the gateway, hold its response), its
/// request for the large body sent, reading without blocking.
fn slow_reader(addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    set_int_option(&sock, libc::IPPROTO_TCP, libc::TCP_MAXSEG, 1448);
    sock.connect(&addr.into()).expect("connect");
    let mut s: TcpStream = sock.into();
    s.write_all(b"GET /large HTTP/1.1\r\nHost: a\r\n\r\n")
        .expect("request");
    s.set_nonblocking(true).expect("nonblocking");
    s
}

/// Both ends of every connection live in this process and the gateway: the limit on open
/// files raised to what is needed (the hard one too, where the tests run as root; the
/// gateway inherits it).
fn raise_fd_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the one struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < needed {
            let raised = libc::rlimit {
                rlim_cur: needed,
                rlim_max: limit.rlim_max.max(needed),
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            } else {
                limit.rlim_cur = limit.rlim_max;
                assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
            }
        }
    }
    assert!(
        limit.rlim_cur >= needed,
        "{needed} open files needed, the hard limit is {}",
        limit.rlim_max
    );
}

/// A `/proc/<pid>/status` field in kB, as bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb * 1024
}

/// The whole large body on a fresh connection: (body bytes, seconds taken).
fn download(addr: SocketAddr) -> (usize, f64) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(b"GET /large HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut all = Vec::with_capacity(BODY + 1024);
    s.read_to_end(&mut all).expect("read the response");
    let body_at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head")
        + 4;
    assert!(
        all.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&all[..body_at])
    );
    (all.len() - body_at, started.elapsed().as_secs_f64())
}

#[test]
fn a_thousand_slow_readers_of_a_large_response_fit_the_memory_limit() {
    raise_fd_limit(4 * READERS as u64 + 1024);
    let up = large_upstream();
    let gw = Gateway::start(&format!(
        "upstreams:\n  large: {{ targets: [\"{up}\"], timeouts: {{ read_ms: 60000, write_ms: 60000 }} }}\nroutes:\n  - {{ name: all, path_prefix: /, upstream: large }}\n"
    ));
    // A fast client first: the whole body, on connections the readers may reuse later.
    let (got, secs) = download(gw.addr);
    assert_eq!(got, BODY, "the fast client's body");
    eprintln!(
        "fast client: {BODY} bytes in {secs:.3} s ({:.0} MB/s)",
        BODY as f64 / secs / 1e6
    );
    let rss_before = proc_status_bytes(gw.pid(), "VmRSS");
    let mut readers: Vec<TcpStream> = (0..READERS).map(|_| slow_reader(gw.addr)).collect();
    // Each takes 1 KiB every half second (always some progress) until all of them have had
    // some of their response, and a few rounds more.
    let mut taken = vec![0usize; READERS];
    let mut chunk = [0u8; 1024];
    let bound = Instant::now() + ALL_SERVED;
    let mut rounds_left = MORE_ROUNDS;
    while rounds_left > 0 && Instant::now() < bound {
        for (reader, taken) in readers.iter_mut().zip(taken.iter_mut()) {
            match reader.read(&mut chunk) {
                Ok(n) => *taken += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("a slow reader's connection failed: {e}"),
            }
        }
        if taken.iter().all(|&n| n > 0) {
            rounds_left -= 1;
        }
        thread::sleep(Duration::from_millis(500)); // the readers' pace is the test's input
    }
    let rss = proc_status_bytes(gw.pid(), "VmRSS");
    let served = taken.iter().filter(|&&n| n > 0).count();
    eprintln!(
        "{READERS} slow readers: gateway RSS {:.1} MiB -> {:.1} MiB ({:.0} KiB each); {served} served, {} bytes taken",
        rss_before as f64 / 1048576.0,
        rss as f64 / 1048576.0,
        rss.saturating_sub(rss_before) as f64 / READERS as f64 / 1024.0,
        taken.iter().sum::<usize>()
    );
    assert_eq!(served, READERS, "every slow reader has its response flowing");
    assert!(
        rss < MEMORY_LIMIT,
        "gateway RSS {rss} bytes with {READERS} slow readers, over {MEMORY_LIMIT}"
    );
    drop(readers);
    // The fast client again, while the gateway ends the readers' requests.
    let (got, _) = download(gw.addr);
    assert_eq!(got, BODY, "the fast client's body after the readers");
}
