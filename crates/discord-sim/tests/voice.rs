//! The voice side with a hand-written client: wss handshake trusting the run's CA, UDP IP
//! discovery, SESSION_DESCRIPTION, encrypted Opus in, a measured tone out; then the faults.
//! Voice payloads are parsed with serenity-voice-model, the types songbird reads them with.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use serenity_voice_model::Event;
use serenity_voice_model::id::GuildId;
use serenity_voice_model::payload::{Heartbeat, Resume, SelectProtocol, Speaking};
use serenity_voice_model::{ProtocolData, SpeakingState};
use support::voice::*;
use support::*;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

/// Joins voice over the raw gateway; returns (voice session id, voice token, endpoint).
async fn join(gw: &mut RawGateway, channel: u64) -> (String, String, String) {
    gw.send(json!({"op": 4, "d": {"guild_id": GUILD.to_string(), "channel_id": channel.to_string(), "self_mute": false, "self_deaf": false}})).await;
    let state = gw.dispatch("VOICE_STATE_UPDATE").await;
    let server = gw.dispatch("VOICE_SERVER_UPDATE").await;
    (
        state["session_id"].as_str().unwrap().into(),
        server["token"].as_str().unwrap().into(),
        server["endpoint"].as_str().unwrap().into(),
    )
}

async fn send(ws: &mut Wss, e: Event) {
    ws.send(Message::text(serde_json::to_string(&e).unwrap())).await.unwrap();
}

/// The next voice payload, as raw JSON and as songbird's type.
async fn recv(ws: &mut Wss) -> (Value, Event) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a voice payload within 5 s") {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                let e = serde_json::from_str::<Event>(&t)
                    .unwrap_or_else(|e| panic!("serenity-voice-model cannot read {v}: {e}"));
                return (v, e);
            }
            Some(Ok(Message::Close(f))) => panic!("voice gateway closed: {f:?}"),
            Some(Ok(_)) => continue,
            other => panic!("voice gateway ended: {other:?}"),
        }
    }
}

fn seal(key: &[u8], ssrc: u32, seq: u16, ts: u32, counter: u32, opus: &[u8]) -> Vec<u8> {
    let mut header = vec![0x80, 0x78];
    header.extend_from_slice(&seq.to_be_bytes());
    header.extend_from_slice(&ts.to_be_bytes());
    header.extend_from_slice(&ssrc.to_be_bytes());
    let mut body = opus.to_vec();
    let mut nonce = Nonce::default();
    nonce[..4].copy_from_slice(&counter.to_be_bytes());
    let tag = Aes256Gcm::new_from_slice(key).unwrap().encrypt_in_place_detached(&nonce, &header, &mut body).unwrap();
    [&header[..], &body, &tag, &counter.to_be_bytes()].concat()
}

#[tokio::test]
async fn a_hand_written_voice_client_is_heard() {
    let sim = world().start().await.unwrap();
    let bot = sim.bot(TOKEN);
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    let (session_id, token, endpoint) = join(&mut gw, VOICE).await;
    assert_eq!(endpoint, sim.voice_endpoint());

    let mut ws = dial(&endpoint, sim.ca_pem()).await.expect("the voice gateway speaks TLS with the run's CA");
    let (hello, Event::Hello(h)) = recv(&mut ws).await else { panic!("HELLO first") };
    assert_eq!(hello["op"], 8);
    assert!(h.heartbeat_interval > 0.0);
    send(&mut ws, identify(&session_id, &token)).await;
    let (_, Event::Ready(ready)) = recv(&mut ws).await else { panic!("READY after IDENTIFY") };
    assert_eq!((ready.ip, ready.port), ("127.0.0.1".parse::<IpAddr>().unwrap(), sim.voice_udp_addr().port()));
    assert_eq!(ready.modes, ["aead_aes256_gcm_rtpsize", "aead_xchacha20_poly1305_rtpsize"]);

    // IP discovery: the server echoes the address it sees.
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.connect((ready.ip, ready.port)).await.unwrap();
    let (n, resp) = ip_discovery(&udp, ready.ssrc).await;
    assert_eq!((n, &resp[..2], &resp[4..8]), (74, &2u16.to_be_bytes()[..], &ready.ssrc.to_be_bytes()[..]));
    let address = std::str::from_utf8(&resp[8..72]).unwrap().trim_end_matches('\0');
    let port = u16::from_be_bytes([resp[72], resp[73]]);
    assert_eq!((address, port), ("127.0.0.1", udp.local_addr().unwrap().port()));

    let data = ProtocolData { address: address.parse().unwrap(), mode: "aead_aes256_gcm_rtpsize".into(), port };
    send(&mut ws, Event::SelectProtocol(SelectProtocol { data, protocol: "udp".into() })).await;
    let (raw, Event::SessionDescription(desc)) = recv(&mut ws).await else {
        panic!("SESSION_DESCRIPTION after SELECT_PROTOCOL")
    };
    assert_eq!(
        (desc.mode.as_str(), desc.secret_key.len(), desc.dave_protocol_version),
        ("aead_aes256_gcm_rtpsize", 32, 0)
    );
    assert_eq!(raw["d"]["dave_protocol_version"], 0, "DAVE stays off");

    send(&mut ws, Event::Heartbeat(Heartbeat { nonce: 1234 })).await;
    let (_, Event::HeartbeatAck(ack)) = recv(&mut ws).await else { panic!("HEARTBEAT_ACK") };
    assert_eq!(ack.nonce, 1234);
    send(
        &mut ws,
        Event::Speaking(Speaking {
            delay: Some(0),
            speaking: SpeakingState::MICROPHONE,
            ssrc: ready.ssrc,
            user_id: None,
        }),
    )
    .await;
    let connected = bot.wait_voice_connected(GUILD, WAIT).await.unwrap();
    assert_eq!(
        (connected.channel_id, connected.ssrc, connected.mode.as_deref()),
        (VOICE, Some(ready.ssrc), Some("aead_aes256_gcm_rtpsize"))
    );

    // 1.6 s of an 880 Hz tone with a 200 ms hole, and one forged packet.
    let mut enc = opus2::Encoder::new(48_000, opus2::Channels::Stereo, opus2::Application::Audio).unwrap();
    let (mut seq, mut ts, mut counter) = (65_500u16, u32::MAX - 5_000, 7u32);
    for frame in 0..90 {
        let pcm: Vec<f32> = (0..960)
            .flat_map(|i| {
                let t = (frame * 960 + i) as f32 / 48_000.0;
                let s = 0.3 * (2.0 * std::f32::consts::PI * 880.0 * t).sin();
                [s, s]
            })
            .collect();
        let opus = enc.encode_vec_float(&pcm, 4000).unwrap();
        if !(40..50).contains(&frame) {
            udp.send(&seal(&desc.secret_key, ready.ssrc, seq, ts, counter, &opus)).await.unwrap();
        }
        if frame == 60 {
            udp.send(&seal(&[9; 32], ready.ssrc, seq, ts, counter, &opus)).await.unwrap();
        }
        (seq, ts, counter) = (seq.wrapping_add(1), ts.wrapping_add(960), counter + 1);
        if frame % 10 == 0 {
            // Spread the burst a little, as UDP loopback buffers are finite.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let stats = bot.wait_for_audio(GUILD, 1.5, WAIT).await.unwrap();
    assert_eq!(
        (stats.packets, stats.gaps, stats.missing_frames, stats.decrypt_failures, stats.decode_failures, stats.streams),
        (80, 1, 10, 1, 0, 1),
        "{stats:?}"
    );
    let hz = stats.dominant_hz.unwrap();
    assert!((hz - 880.0).abs() < 2.0, "dominant {hz} Hz");
    assert!((stats.seconds - 1.6).abs() < 1e-6, "{stats:?}");
    assert_eq!(bot.voice(GUILD).unwrap().speaking, Some(1));

    // Fault: the voice socket drops; a RESUME with the same credentials gets RESUMED.
    assert!(bot.drop_voice(GUILD));
    assert_eq!(close_code(&mut ws).await, None);
    let mut ws = dial(&endpoint, sim.ca_pem()).await.expect("the voice gateway speaks TLS with the run's CA");
    send(
        &mut ws,
        Event::Resume(Resume { server_id: GuildId(GUILD), session_id: session_id.clone(), token: token.clone() }),
    )
    .await;
    assert!(matches!(recv(&mut ws).await.1, Event::Hello(_)));
    assert!(matches!(recv(&mut ws).await.1, Event::Resumed));
    assert_eq!(bot.voice(GUILD).unwrap().resumes, 1);

    // Fault: a close code songbird resumes after.
    assert!(bot.close_voice(GUILD, 4015));
    assert_eq!(close_code(&mut ws).await, Some(4015));

    // Fault: an admin moves the bot: new voice state and server for the bot; the old voice
    // credentials stop working.
    let mut ws = dial(&endpoint, sim.ca_pem()).await.expect("the voice gateway speaks TLS with the run's CA");
    send(
        &mut ws,
        Event::Resume(Resume { server_id: GuildId(GUILD), session_id: session_id.clone(), token: token.clone() }),
    )
    .await;
    recv(&mut ws).await;
    recv(&mut ws).await;
    bot.move_to(GUILD, Some(VOICE2)).unwrap();
    assert_eq!(gw.dispatch("VOICE_STATE_UPDATE").await["channel_id"], VOICE2.to_string());
    let new_token = gw.dispatch("VOICE_SERVER_UPDATE").await["token"].as_str().unwrap().to_string();
    assert_ne!(new_token, token);
    assert_eq!(close_code(&mut ws).await, Some(4014));
    let mut stale = dial(&endpoint, sim.ca_pem()).await.expect("the voice gateway speaks TLS with the run's CA");
    recv(&mut stale).await;
    send(&mut stale, identify(&session_id, &token)).await;
    assert_eq!(close_code(&mut stale).await, Some(4004));
    assert_eq!(bot.voice(GUILD).unwrap().channel_id, VOICE2);

    // Leaving voice (op 4 without a channel) ends the voice session.
    gw.send(json!({"op": 4, "d": {"guild_id": GUILD.to_string(), "channel_id": null, "self_mute": false, "self_deaf": false}})).await;
    assert_eq!(gw.dispatch("VOICE_STATE_UPDATE").await["channel_id"], Value::Null);
    assert!(bot.voice(GUILD).is_none());
    assert!(sim.payload_errors().is_empty(), "{:?}", sim.payload_errors());
}
