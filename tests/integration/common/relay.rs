//! A TCP relay that stands for the network between two regions: every chunk is held for a
//! one-way delay in each direction, and the link can be cut (a black hole: nothing passes, no
//! refusals, no resets) and healed (the connections the cut left hanging are closed, as a real
//! cut ends TCP sessions after long enough, and new ones work again).
//!
//! Per connection, one reader thread per direction stamps each chunk it reads with the time it
//! is due and queues it; one writer thread per direction delivers the queue in order, each chunk
//! at its own due time, so chunks pipeline and latency is one delay, not one per chunk.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a connection to the target may take before the client's connection is dropped.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<thread::JoinHandle<()>>,
}

struct Shared {
    target: SocketAddr,
    one_way: Duration,
    stop: AtomicBool,
    cut: AtomicBool,
    /// Bumped by heal() and drop: a connection only passes bytes while the generation it was
    /// made in is current, so a chunk of a closed connection can never slip through late.
    generation: AtomicU64,
    /// The sockets of every live connection, by id, so heal() and drop can shut them down
    /// (which also ends their blocked reads and writes). Bumping `generation` happens under
    /// this lock, so no connection registers itself unseen by a heal.
    conns: Mutex<HashMap<u64, Vec<TcpStream>>>,
    next_id: AtomicU64,
    to_target: AtomicU64,
    from_target: AtomicU64,
}

/// A chunk and when it is due at the other side; `None` is the end of the stream (a FIN),
/// delayed like the bytes before it.
type Chunk = (Instant, Option<Vec<u8>>);

impl Relay {
    /// Listens on a free 127.0.0.1 port and forwards every accepted connection to `target`,
    /// holding each chunk for `one_way` in each direction (so a request/reply costs 2 × one_way).
    pub fn start(target: SocketAddr, one_way: Duration) -> Relay {
        let listener = super::ports::listener();
        let addr = listener.local_addr().expect("relay addr");
        let shared = Arc::new(Shared {
            target,
            one_way,
            stop: AtomicBool::new(false),
            cut: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            to_target: AtomicU64::new(0),
            from_target: AtomicU64::new(0),
        });
        let accept = {
            let shared = shared.clone();
            thread::spawn(move || accept_loop(listener, shared))
        };
        Relay {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// "redis://127.0.0.1:<port>/0" for a Redis behind the relay.
    pub fn redis_url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// A partition: from now on nothing passes either way, on existing connections and on new
    /// ones (accepted, never connected on: timeouts, not refusals). Chunks due during the cut
    /// are dropped rather than held: heal() closes their connections anyway.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
    }

    /// Ends the partition: every connection made before or during it is closed (both sides see
    /// EOF or a reset) and clients must reconnect; new connections pass again, with the delay.
    pub fn heal(&self) {
        // Closed before the cut is lifted, so no old connection delivers in between.
        self.shared.close_all();
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Bytes delivered so far towards the target, and back from it.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.shared.to_target.load(Ordering::SeqCst),
            self.shared.from_target.load(Ordering::SeqCst),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        // Shut-down sockets end every reader, whose ends of the queues end every writer.
        self.shared.close_all();
    }
}

impl Shared {
    /// Shuts down every connection and makes the current generation stale.
    fn close_all(&self) {
        let mut conns = self.conns.lock().expect("relay conns");
        self.generation.fetch_add(1, Ordering::SeqCst);
        for (_, sockets) in conns.drain() {
            for s in sockets {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    /// Keeps `sockets` for heal() and drop to close; None (and they are closed now) if a heal
    /// or drop came since the connection was accepted in `generation`.
    fn register(&self, generation: u64, sockets: Vec<TcpStream>) -> Option<u64> {
        let mut conns = self.conns.lock().expect("relay conns");
        if self.generation.load(Ordering::SeqCst) != generation || self.stop.load(Ordering::SeqCst) {
            for s in sockets {
                let _ = s.shutdown(Shutdown::Both);
            }
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        conns.insert(id, sockets);
        Some(id)
    }

    /// Whether a chunk of a connection made in `generation` may be delivered now.
    fn passes(&self, generation: u64) -> bool {
        !self.cut.load(Ordering::SeqCst) && self.generation.load(Ordering::SeqCst) == generation
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        let generation = shared.generation.load(Ordering::SeqCst);
        if shared.cut.load(Ordering::SeqCst) {
            // A black hole: the client is connected but nothing reaches the target; kept only
            // so heal() closes it.
            shared.register(generation, vec![client]);
            continue;
        }
        let shared = shared.clone();
        // Connecting off the accept thread, so a slow target does not hold up other clients.
        thread::spawn(move || connect(client, generation, shared));
    }
}

fn connect(client: TcpStream, generation: u64, shared: Arc<Shared>) {
    let Ok(target) = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) else {
        return; // dropping the client closes it, as an unreachable target would
    };
    // Chunks are already held on purpose; Nagle would hold small ones longer still.
    let _ = client.set_nodelay(true);
    let _ = target.set_nodelay(true);
    let clones = || -> std::io::Result<[TcpStream; 4]> {
        Ok([
            client.try_clone()?,
            client.try_clone()?,
            target.try_clone()?,
            target.try_clone()?,
        ])
    };
    let Ok([client_in, client_out, target_in, target_out]) = clones() else {
        return;
    };
    let Some(id) = shared.register(generation, vec![client, target]) else {
        return;
    };
    // The last of the two writers to finish forgets the connection.
    let writers = Arc::new(AtomicUsize::new(2));
    for (from, to, towards_target) in [(client_in, target_out, true), (target_in, client_out, false)] {
        let (tx, rx) = channel();
        let one_way = shared.one_way;
        thread::spawn(move || read_chunks(from, tx, one_way));
        let (shared, writers) = (shared.clone(), writers.clone());
        thread::spawn(move || {
            let delivered = if towards_target {
                &shared.to_target
            } else {
                &shared.from_target
            };
            deliver_chunks(to, rx, &shared, generation, delivered);
            if writers.fetch_sub(1, Ordering::SeqCst) == 1 {
                let conn = shared.conns.lock().expect("relay conns").remove(&id);
                for s in conn.into_iter().flatten() {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        });
    }
}

/// Reads chunks as they come and queues each with its due time, until EOF, an error, or the
/// writer gone.
fn read_chunks(mut from: TcpStream, tx: Sender<Chunk>, one_way: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = tx.send((Instant::now() + one_way, None));
                return;
            }
            Ok(n) => {
                if tx
                    .send((Instant::now() + one_way, Some(buf[..n].to_vec())))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Delivers each queued chunk at its due time, in order; a chunk due while the link is cut, or
/// once its connection's generation is stale, is dropped.
fn deliver_chunks(
    mut to: TcpStream,
    rx: Receiver<Chunk>,
    shared: &Shared,
    generation: u64,
    delivered: &AtomicU64,
) {
    for (due, chunk) in rx {
        thread::sleep(due.saturating_duration_since(Instant::now()));
        if !shared.passes(generation) {
            continue;
        }
        let Some(bytes) = chunk else {
            // The FIN, after the bytes before it.
            let _ = to.shutdown(Shutdown::Write);
            continue;
        };
        // Counted before the write, so whoever has read the bytes sees them counted.
        delivered.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        if to.write_all(&bytes).is_err() {
            // The receiving side is gone: the sender learns of it as over a real link.
            let _ = to.shutdown(Shutdown::Both);
            return;
        }
    }
}
