//! A TCP proxy on 127.0.0.1 that forwards to a server until told to cut: for
//! the tests of a connection that drops mid-upload. Once armed with
//! [`Cutter::cut_after`]`(n)`, it forwards `n` more bytes from clients to the
//! server in total, and at the first byte past them drops every connection
//! (the server sees a body cut short, the client a reset) and closes each new
//! one at once, until [`Cutter::heal`].
//!
//! Plain threads, two per connection; each copies through a fixed 64 KiB
//! buffer, and at most [`MAX_CONNECTIONS`] connections are open at a time
//! (more are closed at once).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Connections open at once; more are closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 64;

/// The copy buffer of each direction of a connection.
const BUFFER: usize = 64 * 1024;

/// The proxy; stops and drops every connection when dropped.
#[derive(Debug)]
pub struct Cutter {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    /// Where connections go.
    upstream: SocketAddr,
    state: Mutex<State>,
    /// Bytes that went client→server since the start.
    forwarded: AtomicU64,
    /// Set on drop: the accept loop ends.
    stop: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes still allowed client→server before the cut; `None`: no limit.
    budget: Option<u64>,
    /// Cut: nothing passes, new connections are closed.
    cut: bool,
    /// The open connections (client side, server side), to shut them down
    /// from here when cutting.
    open: HashMap<u64, (TcpStream, TcpStream)>,
    next_id: u64,
}

impl Cutter {
    /// A proxy to `upstream` on a free port of 127.0.0.1, passing everything.
    pub fn start(upstream: SocketAddr) -> Cutter {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the cutter");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::default(),
            forwarded: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(&listener, &s));
        Cutter {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`, the proxy's own.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forward `bytes` more bytes client→server (all connections together),
    /// then cut: drop every connection at the first byte past them, and close
    /// new ones until [`Cutter::heal`]. `cut_after(0)` cuts at the next byte
    /// any client sends, i.e. on the next request. Clears an earlier cut.
    pub fn cut_after(&self, bytes: u64) {
        let mut st = self.shared.lock();
        st.cut = false;
        st.budget = Some(bytes);
    }

    /// Pass everything again: no cut, no limit.
    pub fn heal(&self) {
        let mut st = self.shared.lock();
        st.cut = false;
        st.budget = None;
    }

    /// Whether it has cut (and not healed since).
    pub fn is_cut(&self) -> bool {
        self.shared.lock().cut
    }

    /// Bytes that went client→server since the start, all connections together.
    pub fn bytes_forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        self.shared.drop_all(&self.shared.lock());
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Shut down both sides of every open connection: their threads see
    /// errors or ends of stream and close them.
    fn drop_all(&self, st: &State) {
        for (client, server) in st.open.values() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        // A connection dropped here is closed.
        let Ok(client) = client else { continue };
        if shared.lock().cut {
            continue;
        }
        let Ok(server) = TcpStream::connect(shared.upstream) else {
            continue;
        };
        let id = {
            // Checked again under the lock that registers it: a cut made
            // meanwhile has not seen this connection to drop it.
            let mut st = shared.lock();
            if st.cut || st.open.len() >= MAX_CONNECTIONS {
                continue;
            }
            let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            let id = st.next_id;
            st.next_id += 1;
            st.open.insert(id, (c, s));
            id
        };
        let shared = shared.clone();
        std::thread::spawn(move || connection(id, client, server, &shared));
    }
}

/// Copy both ways until either side ends or the cut; then close both sides.
fn connection(id: u64, mut client: TcpStream, mut server: TcpStream, shared: &Arc<Shared>) {
    let back = {
        let (Ok(mut from), Ok(mut to)) = (server.try_clone(), client.try_clone()) else {
            shared.lock().open.remove(&id);
            return;
        };
        let shared = shared.clone();
        std::thread::spawn(move || server_to_client(&mut from, &mut to, &shared))
    };
    let clean_end = client_to_server(&mut client, &mut server, shared);
    if clean_end {
        // The client finished sending: let the server's answer through.
        let _ = server.shutdown(Shutdown::Write);
    } else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
    }
    let _ = back.join();
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    shared.lock().open.remove(&id);
}

/// Client→server, counted against the budget. True at the client's end of
/// stream; false on an error or the cut.
fn client_to_server(client: &mut TcpStream, server: &mut TcpStream, shared: &Shared) -> bool {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => n,
            Err(_) => return false,
        };
        let (pass, cut) = {
            let mut st = shared.lock();
            if st.cut {
                return false;
            }
            match st.budget {
                None => (n, false),
                Some(left) if n as u64 <= left => {
                    st.budget = Some(left - n as u64);
                    (n, false)
                }
                Some(left) => {
                    st.budget = Some(0);
                    st.cut = true;
                    (left as usize, true)
                }
            }
        };
        if pass > 0 {
            if server.write_all(&buf[..pass]).is_err() {
                return false;
            }
            shared.forwarded.fetch_add(pass as u64, Ordering::SeqCst);
        }
        if cut {
            shared.drop_all(&shared.lock());
            return false;
        }
    }
}

/// Server→client, stopped by the cut.
fn server_to_client(server: &mut TcpStream, client: &mut TcpStream, shared: &Shared) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if shared.lock().cut || client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}
