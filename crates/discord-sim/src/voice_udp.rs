//! The UDP voice server: answers IP discovery, then decrypts and decodes every audio packet
//! and says how far the audio got in a receiver report each second.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use discortp::discord::{IpDiscoveryPacket, IpDiscoveryType, MutableIpDiscoveryPacket};
use tokio::net::UdpSocket;

use super::audio::AudioTrack;
use super::rtp;
use super::state::{Shared, State};

/// The voice UDP socket, with a receive buffer big enough for bursts: songbird sends a
/// thread's calls (up to 16 packets) at once every 20 ms, and with dozens of guilds playing
/// the default buffer (about 200 packets) overflows whenever the simulator is descheduled
/// for a few ticks, which would count as frames the bot never sent.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    // The kernel caps this at net.core.rmem_max; whatever it grants is better than the default.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(8 << 20);
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

pub(crate) async fn serve(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 4096];
    while let Ok((len, peer)) = socket.recv_from(&mut buf).await {
        let packet = &buf[..len];
        if let Some(reply) = shared.update(|s, _| on_packet(s, packet, peer)) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

fn on_packet(s: &mut State, packet: &[u8], peer: SocketAddr) -> Option<Vec<u8>> {
    if packet.len() == IpDiscoveryPacket::const_packet_size() {
        let req = IpDiscoveryPacket::new(packet)?;
        if req.get_pkt_type() == IpDiscoveryType::Request {
            let key = *s.ssrcs.get(&req.get_ssrc())?;
            s.voice.get_mut(&key)?.udp_peer = Some(peer);
            return Some(discovery_response(req.get_ssrc(), peer));
        }
    }
    // Anything else that is not Opus over RTP (UDP keepalives, RTCP) needs no answer.
    let key = *s.ssrcs.get(&rtp::opus_ssrc(packet)?)?;
    let session = s.voice.get_mut(&key)?;
    if session.blackholed {
        return None;
    }
    let cipher = session.cipher.as_ref()?;
    let frame = rtp::decrypt(cipher, packet);
    let report = match &frame {
        Ok(f) => {
            session.reports.received(f.sequence);
            session.reports.due(cipher, f.ssrc, Instant::now())
        }
        Err(_) => None,
    };
    let track = match s.audio.entry(key) {
        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::hash_map::Entry::Vacant(e) => e.insert(AudioTrack::new().ok()?),
    };
    match frame {
        Ok(frame) => track.push(frame.ssrc, frame.timestamp, &frame.opus),
        Err(_) => track.decrypt_failed(),
    }
    report
}

/// The peer's address as the server sees it, NUL-padded, as songbird expects.
fn discovery_response(ssrc: u32, peer: SocketAddr) -> Vec<u8> {
    let mut bytes = vec![0u8; MutableIpDiscoveryPacket::const_packet_size()];
    let mut view = MutableIpDiscoveryPacket::new(&mut bytes).expect("buffer sized for the packet");
    view.set_pkt_type(IpDiscoveryType::Response);
    view.set_length(70);
    view.set_ssrc(ssrc);
    let mut address = [0u8; 64];
    let ip = peer.ip().to_string();
    address[..ip.len()].copy_from_slice(ip.as_bytes());
    view.set_address(&address);
    view.set_port(peer.port());
    bytes
}
