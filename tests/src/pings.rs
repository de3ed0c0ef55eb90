//! A monitoring endpoint for the tests of the backup job's pings: a real
//! HTTP server on 127.0.0.1 (Python's `http.server`, run by `python3`) that
//! records each request's method, path, `User-Agent` and body, one JSON
//! line each, before it answers `200 OK` (or `404`, `503` for a path with
//! such a segment); over TLS with a certificate of a
//! test CA ([`TestCa`]) when asked.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde::Deserialize;

const SERVER: &str = r#"
import http.server, json, sys

log = sys.argv[1]

class Recorder(http.server.BaseHTTPRequestHandler):
    def record(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        with open(log, "a") as f:
            f.write(json.dumps({
                "method": self.command,
                "path": self.path,
                "user_agent": self.headers.get("User-Agent"),
                "body": body.decode("utf-8", "replace"),
                "body_bytes": len(body),
            }) + "\n")
        # A path with a segment "404" or "503" is answered with that status.
        parts = self.path.split("/")
        self.send_response(404 if "404" in parts else 503 if "503" in parts else 200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = record
    do_POST = record
    do_HEAD = record

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
if len(sys.argv) > 3:
    import ssl
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = tls.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// One request the server received.
#[derive(Debug, Clone, Deserialize)]
pub struct Request {
    /// `POST`, `GET`.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The body, as text.
    pub body: String,
    /// The body's length in bytes, as received.
    pub body_bytes: usize,
}

/// The running server; stopped when dropped.
#[derive(Debug)]
pub struct PingServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
}

impl PingServer {
    /// Start one, recording into `log`.
    pub fn start(log: PathBuf) -> PingServer {
        PingServer::launch(log, None)
    }

    /// Start one serving https with `ca`'s certificate for 127.0.0.1.
    pub fn start_tls(log: PathBuf, ca: &TestCa) -> PingServer {
        PingServer::launch(log, Some(ca))
    }

    fn launch(log: PathBuf, ca: Option<&TestCa>) -> PingServer {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", SERVER]).arg(&log);
        if let Some(ca) = ca {
            cmd.arg(&ca.leaf).arg(&ca.leaf_key);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the ping server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("its stdout"))
            .read_line(&mut line)
            .expect("the server's port");
        let port = line.trim().parse().expect("a port number");
        PingServer { child, port, log }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `https://127.0.0.1:<port><path>`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        match std::fs::read_to_string(&self.log) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a recorded request"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("the ping log: {e}"),
        }
    }
}

impl Drop for PingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then closed).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("its address").port()
}

/// A CA made for one test (`openssl`), and a server certificate it issued
/// for 127.0.0.1.
#[derive(Debug)]
pub struct TestCa {
    /// The CA's certificate (PEM): what a client must trust.
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub leaf: PathBuf,
    /// Its key.
    pub leaf_key: PathBuf,
}

impl TestCa {
    /// Make one in `dir`.
    pub fn new(dir: &std::path::Path) -> TestCa {
        let at = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=abssd test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "leaf.key",
                    "-out",
                    "leaf.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            at("leaf.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n",
        )
        .expect("extensions file");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ]);
        TestCa {
            ca: at("ca.pem"),
            leaf: at("leaf.pem"),
            leaf_key: at("leaf.key"),
        }
    }
}
