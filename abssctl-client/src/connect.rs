//! Opening the JSON-RPC connection: WebSocket over the daemon's Unix socket, no TLS.

use std::io;
use std::path::Path;
use std::time::Duration;

use abssd_proto::{ErrorKind, WireError};
use jsonrpsee::client_transport::ws::{Url, WsTransportClientBuilder};
use jsonrpsee::core::client::{Client, ClientBuilder};
use tokio::net::UnixStream;

/// Calls that block (reads, dry runs) may walk a large instance; mutations are sent
/// detached and followed through `op.watch`, which no request timeout applies to.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// A `backup.list` of a long-lived host can outgrow jsonrpsee's 10 MiB default.
const MAX_RESPONSE_BYTES: u32 = 256 * 1024 * 1024;

/// An operation's events are replayed from its start; a long one has many, and
/// jsonrpsee drops a subscription whose buffer fills up.
const SUBSCRIPTION_BUFFER: usize = 64 * 1024;

/// Connect to abssd at `socket`. Failures are `environment` errors whose message
/// names the socket and says how to get a daemon there.
pub async fn connect(socket: &Path) -> Result<Client, WireError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|err| unreachable(socket, &err))?;
    // The host part is only the HTTP `Host` header of the upgrade request.
    let url = Url::parse("ws://localhost").expect("a constant, valid URL");
    let (tx, rx) = WsTransportClientBuilder::default()
        .max_response_size(MAX_RESPONSE_BYTES)
        .build_with_stream(url, stream)
        .await
        .map_err(|err| {
            WireError::new(
                ErrorKind::Environment,
                format!(
                    "{} accepted the connection but the WebSocket handshake failed ({err}); \
                     is abssd the program listening there?",
                    socket.display()
                ),
            )
        })?;
    Ok(ClientBuilder::default()
        .request_timeout(REQUEST_TIMEOUT)
        .max_buffer_capacity_per_subscription(SUBSCRIPTION_BUFFER)
        .build_with_tokio(tx, rx))
}

/// The error for a socket that cannot be connected to, with what to do about it.
fn unreachable(socket: &Path, err: &io::Error) -> WireError {
    let socket = socket.display();
    let start = "start it with `systemctl start abssd.socket` (or `abssd --prefix DIR` for a \
                 sandbox), or point --socket / ABSSD_SOCKET at its socket";
    let message = match err.kind() {
        io::ErrorKind::NotFound => {
            format!("cannot reach abssd: no socket at {socket}; the daemon is not running: {start}")
        }
        io::ErrorKind::ConnectionRefused => {
            format!("cannot reach abssd: nothing is listening on {socket}; {start}")
        }
        io::ErrorKind::PermissionDenied => format!(
            "cannot reach abssd: permission denied on {socket}; the socket is for root and \
             the `abssctl` group: ask an administrator to add you to it (then log in again)"
        ),
        _ => format!("cannot reach abssd at {socket}: {err}; {start}"),
    };
    WireError::new(ErrorKind::Environment, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_socket_is_an_environment_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nope.sock");
        let err = connect(&socket).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Environment);
        assert!(
            err.message.contains(&socket.display().to_string()),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("systemctl start abssd.socket"),
            "{}",
            err.message
        );
    }

    #[test]
    fn refused_and_denied_say_why() {
        let path = Path::new("/run/x.sock");
        let refused = unreachable(path, &io::Error::from(io::ErrorKind::ConnectionRefused));
        assert!(
            refused
                .message
                .contains("nothing is listening on /run/x.sock")
        );
        let denied = unreachable(path, &io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(denied.message.contains("permission denied on /run/x.sock"));
        assert!(denied.message.contains("abssctl` group"));
    }
}
