//! How every Weir process dials another: connecting is bounded, an idle
//! connection is probed with HTTP/2 keepalive (a frozen or cut-off peer is
//! noticed instead of waited for), and the callers of short control calls
//! give each a deadline.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

/// Longest wait for a connection to open.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often an idle connection is probed.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// A probe not answered within this long closes the connection.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Deadline of a short control call (register, heartbeat, report, deploy,
/// cancel, list): a peer that does not answer within it is treated as down.
pub const CONTROL_CALL_DEADLINE: Duration = Duration::from_secs(10);

/// An endpoint for `url` with the bounds above; calls carry no deadline of
/// their own (streams live long), see [`with_deadline`].
pub fn endpoint(url: &str) -> Result<Endpoint, String> {
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|error| format!("bad address {url}: {error}"))?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true))
}

/// Connects to `url` with [`endpoint`]'s bounds; the error is the
/// transport's, for the caller to say what it tried to reach.
pub async fn connect(url: &str) -> Result<Channel, String> {
    endpoint(url)?.connect().await.map_err(|error| error.to_string())
}

/// `message` as a request that fails with `DEADLINE_EXCEEDED` after `deadline`.
pub fn with_deadline<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
}
