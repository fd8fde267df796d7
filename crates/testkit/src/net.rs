//! Loopback ports.

use anyhow::{Result, bail};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A port free on 127.0.0.1 at the time of asking (the OS picks it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 must work on any test machine")
}

/// Waits until something accepts TCP connections on `port`, or `alive` says the server died.
pub async fn wait_for_port(port: u16, timeout: Duration, alive: impl FnMut() -> bool) -> Result<()> {
    wait_for_addr(SocketAddr::from(([127, 0, 0, 1], port)), timeout, alive).await
}

/// [`wait_for_port`] on another local address.
pub async fn wait_for_addr(addr: SocketAddr, timeout: Duration, mut alive: impl FnMut() -> bool) -> Result<()> {
    let port = addr.port();
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if !alive() {
            bail!("the server exited before opening port {port}");
        }
        if Instant::now() > deadline {
            bail!("nothing listens on port {port} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
