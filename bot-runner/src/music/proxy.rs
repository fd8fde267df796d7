//! yt-dlp's own requests (the page it extracts from) go through this proxy on 127.0.0.1,
//! which applies the [`MediaPolicy`] after DNS resolution, as the guarded client does for
//! what bot-runner fetches itself: a page whose name resolves only to internal addresses
//! gets 403 and is never connected to.
//!
//! Hand-written on tokio: the proxy crates are intercepting (TLS-terminating) proxies or
//! whole servers, where this needs only `CONNECT host:port` (https) and absolute-URI
//! requests (http), one per connection, with the policy between the name and the socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::guard::{FetchLimits, MediaPolicy};

/// Largest request head accepted (yt-dlp's are well under 2 KiB).
const MAX_HEAD: usize = 16 * 1024;

/// A listening proxy; yt-dlp is given [`MediaProxy::url`].
pub struct MediaProxy {
    addr: SocketAddr,
}

impl MediaProxy {
    /// Binds 127.0.0.1 on a free port and serves on the current tokio runtime. A proxied
    /// connection lasts `lifetime` at most: yt-dlp is killed at the resolve timeout, and a
    /// server that never closes must not hold the proxy's side open after it.
    pub fn start(policy: Arc<MediaPolicy>, limits: FetchLimits, lifetime: Duration) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((client, _)) => {
                        let policy = policy.clone();
                        tokio::spawn(async move {
                            if let Err(e) = handle(client, &policy, limits, lifetime).await {
                                tracing::debug!(error = %e, "yt-dlp proxy connection ended");
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the yt-dlp proxy could not accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Self { addr })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What a request head asks the proxy for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// `CONNECT host:port`: a tunnel (https).
    Tunnel { host: String, port: u16 },
    /// An absolute-URI request (http): forwarded with its request line in origin form.
    Forward { host: String, port: u16, head: Vec<u8> },
}

/// Parses a request head (through the blank line). None: not a request this proxy serves.
fn parse(head: &[u8]) -> Option<Target> {
    let text = std::str::from_utf8(head).ok()?;
    let (line, rest) = text.split_once("\r\n")?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !version.starts_with("HTTP/1.") {
        return None;
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = target.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().ok()?;
        return (!host.is_empty()).then(|| Target::Tunnel { host: host.to_string(), port });
    }
    let url = reqwest::Url::parse(target).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = url.port_or_known_default()?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    };
    // One request per connection: a second one could name another host, which this
    // connection's upstream is not.
    let mut out = format!("{method} {path} {version}\r\n");
    for header in rest.split("\r\n").filter(|h| !h.is_empty()) {
        let name = header.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
        if !["connection", "proxy-connection", "proxy-authorization", "keep-alive"].contains(&name.as_str()) {
            out.push_str(header);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    Some(Target::Forward { host, port, head: out.into_bytes() })
}

/// Reads up to the end of the request head; what follows it (a body's start) comes back too.
async fn read_head(client: &mut TcpStream, limits: FetchLimits) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok(Some((buf, rest)));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = tokio::time::timeout(limits.read, client.read(&mut chunk)).await.map_err(std::io::Error::other)??;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The permitted addresses of `host`; connects to the first that answers.
async fn connect(host: &str, port: u16, policy: &MediaPolicy, limits: FetchLimits) -> Result<TcpStream, &'static str> {
    let found = tokio::time::timeout(limits.connect, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| "502 Bad Gateway")?
        .map_err(|_| "502 Bad Gateway")?;
    let permitted: Vec<SocketAddr> = found.filter(|a| policy.permits(a.ip())).collect();
    if permitted.is_empty() {
        return Err("403 Forbidden");
    }
    for addr in permitted {
        if let Ok(Ok(stream)) = tokio::time::timeout(limits.connect, TcpStream::connect(addr)).await {
            return Ok(stream);
        }
    }
    Err("502 Bad Gateway")
}

async fn answer(client: &mut TcpStream, status: &str) -> std::io::Result<()> {
    let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    client.write_all(reply.as_bytes()).await
}

async fn handle(
    mut client: TcpStream,
    policy: &MediaPolicy,
    limits: FetchLimits,
    lifetime: Duration,
) -> std::io::Result<()> {
    let Some((head, early)) = read_head(&mut client, limits).await? else {
        return answer(&mut client, "400 Bad Request").await;
    };
    let Some(target) = parse(&head) else {
        return answer(&mut client, "400 Bad Request").await;
    };
    let (host, port) = match &target {
        Target::Tunnel { host, port } | Target::Forward { host, port, .. } => (host.clone(), *port),
    };
    let mut upstream = match connect(&host, port, policy, limits).await {
        Ok(stream) => stream,
        Err(status) => {
            tracing::info!(host = %host, port, status, "yt-dlp proxy refused a request");
            return answer(&mut client, status).await;
        }
    };
    match target {
        Target::Tunnel { .. } => client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n").await?,
        Target::Forward { head, .. } => upstream.write_all(&head).await?,
    }
    upstream.write_all(&early).await?;
    match tokio::time::timeout(lifetime, tokio::io::copy_bidirectional(&mut client, &mut upstream)).await {
        Ok(copied) => copied.map(|_| ()),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_into_a_tunnel_or_a_forward_in_origin_form() {
        assert_eq!(
            parse(b"CONNECT media.example:443 HTTP/1.1\r\nHost: media.example:443\r\n\r\n"),
            Some(Target::Tunnel { host: "media.example".into(), port: 443 })
        );
        assert_eq!(
            parse(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n"),
            Some(Target::Tunnel { host: "::1".into(), port: 8443 })
        );
        let Some(Target::Forward { host, port, head }) =
            parse(b"GET http://media.example/a/b?x=1 HTTP/1.1\r\nHost: media.example\r\nProxy-Connection: keep-alive\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n")
        else {
            panic!("a forward")
        };
        assert_eq!((host.as_str(), port), ("media.example", 80));
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET /a/b?x=1 HTTP/1.1\r\nHost: media.example\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        for bad in [
            &b"GET /relative HTTP/1.1\r\n\r\n"[..],
            b"GET ftp://media.example/x HTTP/1.1\r\n\r\n",
            b"CONNECT media.example HTTP/1.1\r\n\r\n",
            b"CONNECT :443 HTTP/1.1\r\n\r\n",
            b"GET http://media.example/ SPDY/3\r\n\r\n",
            b"\xff\xfe\r\n\r\n",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    /// Hostile: a tunnel to loopback is refused unless loopback is allowed.
    #[tokio::test]
    async fn a_tunnel_to_a_refused_address_gets_403_and_an_allowed_one_is_connected() {
        let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = target.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = target.accept().await {
                let _ = s.write_all(b"hello").await;
            }
        });
        let limits = FetchLimits { connect: Duration::from_secs(2), read: Duration::from_secs(2) };
        let ask = |proxy: MediaProxy, host: &'static str| async move {
            let mut c = TcpStream::connect(proxy.addr).await.unwrap();
            c.write_all(format!("CONNECT {host}:{port} HTTP/1.1\r\n\r\n").as_bytes()).await.unwrap();
            let mut got = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got)).await;
            String::from_utf8_lossy(&got).into_owned()
        };
        let lifetime = Duration::from_secs(30);
        let strict = MediaProxy::start(Arc::new(MediaPolicy::default()), limits, lifetime).unwrap();
        for host in ["localhost", "127.0.0.1", "[::ffff:127.0.0.1]"] {
            let got = ask(MediaProxy { addr: strict.addr }, host).await;
            assert!(got.starts_with("HTTP/1.1 403"), "{host}: {got:?}");
        }
        let open = MediaPolicy::new(vec!["127.0.0.0/8".parse().unwrap()], Vec::new());
        let open = MediaProxy::start(Arc::new(open), limits, lifetime).unwrap();
        let got = ask(open, "127.0.0.1").await;
        assert_eq!(got, "HTTP/1.1 200 Connection Established\r\n\r\nhello");
    }

    /// Hostile: a server that accepts and never closes does not hold a proxied connection
    /// past its lifetime, even once yt-dlp has gone.
    #[tokio::test]
    async fn a_silent_server_does_not_hold_a_connection_past_its_lifetime() {
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        });
        let limits = FetchLimits { connect: Duration::from_secs(2), read: Duration::from_secs(2) };
        let open = MediaPolicy::new(vec!["127.0.0.0/8".parse().unwrap()], Vec::new());
        let proxy = MediaProxy::start(Arc::new(open), limits, Duration::from_secs(1)).unwrap();
        let mut c = TcpStream::connect(proxy.addr).await.unwrap();
        c.write_all(format!("GET http://127.0.0.1:{port}/page HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let start = std::time::Instant::now();
        let mut got = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut got)).await;
        assert!(closed.is_ok(), "the proxy kept the connection open");
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    }
}
