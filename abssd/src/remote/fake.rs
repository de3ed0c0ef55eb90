//! A fake S3 endpoint on 127.0.0.1 for unit tests of what moto cannot do:
//! a server that pages forever, trickles its answer, or never answers. Each
//! request (line and headers read, body skipped) is recorded and handed,
//! with its connection, to the test's `answer`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use super::creds::Credentials;
use super::s3::{Patience, S3};
use crate::config::remotes::RemoteSettings;

/// A running fake.
pub struct Fake {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The request line of every request received, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// A client of [`Fake::remote`].
    pub fn client(&self, patience: Patience) -> S3 {
        let credentials: Credentials =
            super::creds::parse("aws_access_key_id = a\naws_secret_access_key = b\n").unwrap();
        S3::new(&self.remote(), credentials, patience)
    }

    /// Remote `fake`: bucket `b`, prefix `p`, on this fake.
    pub fn remote(&self) -> RemoteSettings {
        RemoteSettings {
            bucket: "b".into(),
            ..RemoteSettings::for_tests("fake", &self.endpoint, "p")
        }
    }
}

/// Serves every connection on a thread of its own: `answer(n, request
/// line, connection)` for the `n`th request (0-based, all connections).
pub fn serve(answer: impl Fn(usize, &str, &mut TcpStream) + Send + Sync + 'static) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (seen, answer) = (Arc::clone(&requests), Arc::new(answer));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let _ = stream.set_nodelay(true);
            let (seen, answer) = (Arc::clone(&seen), Arc::clone(&answer));
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                while let Some(line) = request(&mut reader) {
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(line.clone());
                        seen.len() - 1
                    };
                    answer(n, &line, &mut stream);
                }
            });
        }
    });
    Fake { endpoint, requests }
}

/// Reads one request; its request line (`None` at the connection's end).
fn request(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut first = String::new();
    if reader.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut length = 0u64;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((k, v)) = header.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    std::io::copy(&mut reader.by_ref().take(length), &mut std::io::sink()).ok()?;
    Some(first.trim_end().to_owned())
}

/// Writes a whole answer: `status` with `body`.
pub fn reply(stream: &mut TcpStream, status: u16, body: &str) {
    // One write: no small segments left waiting on a delayed ACK.
    let answer = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nETag: \"e\"\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes());
}
