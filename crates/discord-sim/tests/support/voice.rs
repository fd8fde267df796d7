//! A raw voice-gateway client for the simulator's voice tests.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serenity_voice_model::Event;
use serenity_voice_model::id::{GuildId, UserId};
use serenity_voice_model::payload::Identify;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::{BOT_ID, GUILD};

pub type Wss = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Dials `wss://{endpoint}` trusting only `ca_pem` (no environment needed), checking that
/// the certificate names the host.
pub async fn dial(endpoint: &str, ca_pem: &str) -> Result<Wss, tokio_tungstenite::tungstenite::Error> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let url = format!("wss://{endpoint}/?v=8");
    let connector = Some(Connector::Rustls(Arc::new(config)));
    Ok(tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector).await?.0)
}

pub async fn close_code(ws: &mut Wss) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("closed within 5 s") {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => return None,
        }
    }
}

pub fn identify(session_id: &str, token: &str) -> Event {
    Event::Identify(Identify {
        server_id: GuildId(GUILD),
        session_id: session_id.into(),
        token: token.into(),
        user_id: UserId(BOT_ID),
        max_dave_protocol_version: Some(1),
    })
}

/// Discord's UDP IP discovery from `udp` (connected to the voice server) for `ssrc`;
/// returns the answer's length and bytes.
pub async fn ip_discovery(udp: &tokio::net::UdpSocket, ssrc: u32) -> (usize, [u8; 74]) {
    let mut req = vec![0u8; 74];
    req[..2].copy_from_slice(&1u16.to_be_bytes());
    req[2..4].copy_from_slice(&70u16.to_be_bytes());
    req[4..8].copy_from_slice(&ssrc.to_be_bytes());
    udp.send(&req).await.unwrap();
    let mut resp = [0u8; 74];
    let n = tokio::time::timeout(Duration::from_secs(5), udp.recv(&mut resp)).await.unwrap().unwrap();
    (n, resp)
}
