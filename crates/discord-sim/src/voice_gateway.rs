//! The voice gateway over wss (v8): HELLO, IDENTIFY → READY, SELECT_PROTOCOL →
//! SESSION_DESCRIPTION (DAVE off), heartbeats, SPEAKING, RESUME → RESUMED.
//! Payloads are built from serenity-voice-model, the types songbird itself parses.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use rand::RngCore;
use serenity_voice_model::Event;
use serenity_voice_model::payload::{HeartbeatAck, Hello, Ready, SessionDescription};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;

use super::gateway::close_frame;
use super::rtp::{MODES, VoiceCipher};
use super::state::{Conn, Outgoing, Shared, State, VoiceKey};
use super::validate;

/// Voice close codes (serenity-voice-model's `CloseCode`).
pub mod close {
    pub const NOT_AUTHENTICATED: u16 = 4003;
    pub const AUTHENTICATION_FAILED: u16 = 4004;
    pub const SESSION_NO_LONGER_VALID: u16 = 4006;
    pub const VOICE_SERVER_CRASHED: u16 = 4015;
    pub const UNKNOWN_ENCRYPTION_MODE: u16 = 4016;
}

pub(crate) async fn serve(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(connection(stream, acceptor.clone(), shared.clone()));
    }
}

/// Serializes a voice payload, checking it reads back as songbird will read it.
pub(crate) fn frame(shared_state: &mut State, event: Event) -> Outgoing {
    let v = serde_json::to_value(&event).expect("voice payloads serialize");
    if let Err(e) = validate::voice(&v) {
        tracing::error!(error = %e, "voice payload songbird would misread");
        shared_state.payload_errors.push(e);
    }
    Outgoing::Frame(v)
}

async fn connection(stream: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let Ok(tls) = acceptor.accept(stream).await else {
        return;
    };
    let Ok(ws) = tokio_tungstenite::accept_async(tls).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn = Conn { id: shared.update(|s, _| s.conn_id()), tx };
    let interval = shared.endpoints.voice_heartbeat_interval.as_secs_f64() * 1000.0;
    shared.update(|s, _| {
        let hello = frame(s, Event::Hello(Hello { heartbeat_interval: interval }));
        let _ = conn.tx.send(hello);
    });
    let mut key: Option<VoiceKey> = None;
    loop {
        tokio::select! {
            incoming = source.next() => match incoming {
                Some(Ok(Message::Text(text))) => handle(&shared, &conn, &mut key, &text),
                // DAVE's binary opcodes: never expected, as SESSION_DESCRIPTION turns DAVE off.
                Some(Ok(Message::Binary(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            out = rx.recv() => match out {
                Some(Outgoing::Frame(v)) => {
                    if sink.send(Message::text(v.to_string())).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let _ = sink.send(close_frame(code, reason)).await;
                    break;
                }
                Some(Outgoing::Drop) | None => break,
            },
        }
    }
    if let Some(key) = key {
        shared.update(|s, _| {
            if let Some(v) = s.voice.get_mut(&key).filter(|v| v.conn.as_ref().is_some_and(|c| c.id == conn.id)) {
                v.conn = None;
            }
        });
    }
}

fn handle(shared: &Shared, conn: &Conn, key: &mut Option<VoiceKey>, text: &str) {
    let close = |code: u16, reason: &str| {
        let _ = conn.tx.send(Outgoing::Close(code, reason.to_string()));
    };
    let Ok(event) = serde_json::from_str::<Event>(text) else {
        // Payloads serenity-voice-model cannot read (e.g. newer opcodes) are ignored, like songbird does.
        return;
    };
    let udp = shared.endpoints.udp;
    shared.update(|s, _| match event {
        Event::Identify(id) => {
            let k = (id.server_id.0, id.user_id.0);
            let Some(v) = s.voice.get(&k) else {
                return close(close::SESSION_NO_LONGER_VALID, "Session is no longer valid.");
            };
            if v.session_id != id.session_id || v.token != id.token {
                return close(close::AUTHENTICATION_FAILED, "Authentication failed.");
            }
            if let Some(b) = s.bots.iter_mut().find(|b| b.spec.user_id == k.1 && b.voice_refused.contains(&k.0)) {
                b.voice_refusals += 1;
                tracing::info!(guild = k.0, user = k.1, "voice IDENTIFY refused (fault injected by the test)");
                return close(close::AUTHENTICATION_FAILED, "Authentication failed.");
            }
            let ssrc = match v.ssrc {
                Some(ssrc) => ssrc,
                None => s.ssrc(),
            };
            s.ssrcs.insert(ssrc, k);
            let v = s.voice.get_mut(&k).expect("looked up above");
            v.ssrc = Some(ssrc);
            v.cipher = None;
            v.mode = None;
            if let Some(old) = v.conn.replace(conn.clone()) {
                let _ = old.tx.send(Outgoing::Drop);
            }
            *key = Some(k);
            if let Some(track) = s.audio.get_mut(&k) {
                track.new_stream();
            }
            let ready =
                Ready { ip: udp.ip(), modes: MODES.iter().map(|m| m.to_string()).collect(), port: udp.port(), ssrc };
            let out = frame(s, Event::Ready(ready));
            let _ = conn.tx.send(out);
        }
        Event::Resume(r) => {
            let found = s
                .voice
                .iter()
                .find(|(k, v)| k.0 == r.server_id.0 && v.session_id == r.session_id && v.token == r.token)
                .map(|(k, _)| *k);
            let Some(k) = found else {
                return close(close::SESSION_NO_LONGER_VALID, "Session is no longer valid.");
            };
            let v = s.voice.get_mut(&k).expect("found above");
            v.resumes += 1;
            tracing::info!(guild = k.0, user = k.1, "voice session resumed");
            if let Some(old) = v.conn.replace(conn.clone()) {
                let _ = old.tx.send(Outgoing::Drop);
            }
            *key = Some(k);
            let out = frame(s, Event::Resumed);
            let _ = conn.tx.send(out);
        }
        _ if key.is_none() => close(close::NOT_AUTHENTICATED, "Not authenticated."),
        Event::SelectProtocol(p) => {
            let k = key.expect("checked above");
            let Some(cipher_key) = MODES.contains(&p.data.mode.as_str()).then(|| {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                bytes
            }) else {
                return close(close::UNKNOWN_ENCRYPTION_MODE, "Unknown encryption mode.");
            };
            let Some(v) = s.voice.get_mut(&k) else { return };
            v.cipher = VoiceCipher::new(&p.data.mode, &cipher_key);
            tracing::info!(guild = k.0, user = k.1, mode = %p.data.mode, "voice session keyed");
            v.mode = Some(p.data.mode.clone());
            let desc =
                SessionDescription { mode: p.data.mode, secret_key: cipher_key.to_vec(), dave_protocol_version: 0 };
            let out = frame(s, Event::SessionDescription(desc));
            let _ = conn.tx.send(out);
        }
        Event::Heartbeat(h) => {
            let out = frame(s, Event::HeartbeatAck(HeartbeatAck { nonce: h.nonce }));
            let _ = conn.tx.send(out);
        }
        Event::Speaking(sp) => {
            if let Some(v) = key.and_then(|k| s.voice.get_mut(&k)) {
                v.speaking = Some(u64::from(sp.speaking.bits()));
            }
        }
        _ => {}
    });
}
