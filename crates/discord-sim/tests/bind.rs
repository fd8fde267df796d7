//! Serving pods: a simulator bound to another address than 127.0.0.1 listens only there and
//! names only that address in everything it hands out; bots get ids from Discord-shaped
//! tokens; the voice-refusal fault.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use discord_sim::{BotSpec, DiscordSim, SimTls};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use serenity_voice_model::Event;
use support::voice::*;
use support::*;
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

/// Loopback, so allowed here, but not 127.0.0.1: anything still handing out 127.0.0.1 shows.
const OTHER: [u8; 4] = [127, 0, 0, 2];

fn other() -> IpAddr {
    IpAddr::from(OTHER)
}

async fn recv(ws: &mut Wss) -> Option<Event> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a voice payload within 5 s") {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("songbird's types read it")),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Joins voice over the raw gateway; returns (voice session id, voice token, endpoint).
async fn join(gw: &mut RawGateway) -> (String, String, String) {
    gw.send(json!({"op": 4, "d": {"guild_id": GUILD.to_string(), "channel_id": VOICE.to_string(), "self_mute": false, "self_deaf": false}})).await;
    let state = gw.dispatch("VOICE_STATE_UPDATE").await;
    let server = gw.dispatch("VOICE_SERVER_UPDATE").await;
    (
        state["session_id"].as_str().unwrap().into(),
        server["token"].as_str().unwrap().into(),
        server["endpoint"].as_str().unwrap().into(),
    )
}

fn host_of(url: &str) -> IpAddr {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let hostport = rest.split('/').next().unwrap();
    hostport.parse::<SocketAddr>().unwrap_or_else(|e| panic!("{url}: {e}")).ip()
}

/// Nothing answers on 127.0.0.1 at `port`: the socket is bound to the other address only.
fn refused_on_localhost(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1)).is_err()
}

#[tokio::test]
async fn a_simulator_bound_elsewhere_hands_out_only_that_address() {
    let sim = world().bind(other()).start().await.unwrap();
    assert_eq!(sim.bind_ip(), other());
    for url in [sim.api_url(), sim.api_base(), sim.gateway_url(), format!("wss://{}", sim.voice_endpoint())] {
        assert_eq!(host_of(&url), other(), "{url}");
    }
    assert_eq!(sim.voice_udp_addr().ip(), other());

    // REST: the gateway URLs it answers.
    let client = reqwest::Client::new();
    let auth = format!("Bot {TOKEN}");
    for route in ["/gateway", "/gateway/bot"] {
        let resp = client.get(format!("{}{route}", sim.api_base())).header("Authorization", &auth).send().await;
        let body: Value = resp.unwrap().json().await.unwrap();
        assert_eq!(host_of(body["url"].as_str().unwrap()), other(), "{route}: {body}");
    }
    assert!(refused_on_localhost(host_port(&sim.api_url())), "REST also listens on 127.0.0.1");
    assert!(refused_on_localhost(host_port(&sim.gateway_url())), "the gateway also listens on 127.0.0.1");

    // Gateway: READY's resume URL, then VOICE_SERVER_UPDATE's endpoint.
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    let ready = gw.identify(TOKEN).await;
    assert_eq!(host_of(ready["resume_gateway_url"].as_str().unwrap()), other(), "{ready}");
    let (session_id, token, endpoint) = join(&mut gw).await;
    assert_eq!(host_of(&format!("wss://{endpoint}")), other(), "VOICE_SERVER_UPDATE endpoint {endpoint}");
    assert!(
        refused_on_localhost(host_port(&format!("wss://{endpoint}"))),
        "the voice gateway also listens on 127.0.0.1"
    );

    // Voice: the certificate names the address (verified by rustls), READY names it for UDP.
    let mut ws = dial(&endpoint, sim.ca_pem()).await.expect("the voice certificate names the bind address");
    assert!(matches!(recv(&mut ws).await, Some(Event::Hello(_))));
    ws.send(Message::text(serde_json::to_string(&identify(&session_id, &token)).unwrap())).await.unwrap();
    let Some(Event::Ready(ready)) = recv(&mut ws).await else { panic!("READY after IDENTIFY") };
    assert_eq!(SocketAddr::new(ready.ip, ready.port), sim.voice_udp_addr());

    // UDP IP discovery answers on that address only.
    let udp = UdpSocket::bind(SocketAddr::new(other(), 0)).await.unwrap();
    udp.connect((ready.ip, ready.port)).await.unwrap();
    let (n, _) = ip_discovery(&udp, ready.ssrc).await;
    assert_eq!(n, 74);

    // The CA file is what the PEM says, for handing to pods.
    assert_eq!(std::fs::read_to_string(sim.ca_file()).unwrap(), sim.ca_pem());

    // Tones bound the same way name the same address.
    let tones = discord_sim::tones::ToneServer::start_on(other()).await.unwrap();
    assert_eq!(host_of(&tones.wav(440, 1)), other());
    let wav = client.get(tones.wav(440, 1)).send().await.unwrap();
    assert_eq!(wav.status(), 200);
    assert!(refused_on_localhost(tones.addr().port()), "the tone server also listens on 127.0.0.1");
}

fn host_port(url: &str) -> u16 {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    rest.split('/').next().unwrap().parse::<SocketAddr>().unwrap().port()
}

#[tokio::test]
async fn a_loopback_only_certificate_is_refused_for_another_address() {
    crypto();
    // TLS material made for loopback only cannot serve another address: start says so.
    let err = world().bind(other()).tls(SimTls::generate().unwrap()).start().await.err().expect("refused");
    assert!(format!("{err:#}").contains("127.0.0.2"), "{err:#}");
    // Made for it, it serves.
    let sim = world().bind(other()).tls(SimTls::generate_for(&[other()]).unwrap()).start().await.unwrap();
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    let (_, _, endpoint) = join(&mut gw).await;
    dial(&endpoint, sim.ca_pem()).await.expect("TLS with a certificate naming 127.0.0.2");
    // 0.0.0.0 cannot be handed out.
    assert!(world().bind(IpAddr::from([0, 0, 0, 0])).start().await.is_err());
}

#[tokio::test]
async fn a_discord_shaped_token_names_the_bot() {
    crypto();
    let id: u64 = 940_000_000_000_000_123;
    let token = format!("{}.GhIjKl.hmac-part", base64::engine::general_purpose::STANDARD_NO_PAD.encode(id.to_string()));
    let sim = DiscordSim::builder()
        .guild(guild())
        .bot(BotSpec::new(&token).in_guild(GUILD))
        .bot(BotSpec::new("made-up-token").in_guild(GUILD))
        .start()
        .await
        .unwrap();
    let bot = sim.bot(&token);
    assert_eq!((bot.user_id(), bot.application_id()), (id, id));
    let made_up = sim.bot("made-up-token");
    assert!(made_up.user_id() != 0 && made_up.user_id() != id, "a made-up token still gets an id of its own");

    // Over REST, as serenity and the operator read it.
    let client = reqwest::Client::new();
    let auth = format!("Bot {token}");
    let get = |route: &str| client.get(format!("{}{route}", sim.api_base())).header("Authorization", &auth).send();
    let me: Value = get("/users/@me").await.unwrap().json().await.unwrap();
    assert_eq!(me["id"], id.to_string(), "{me}");
    let app: Value = get("/applications/@me").await.unwrap().json().await.unwrap();
    assert_eq!(app["id"], id.to_string(), "{app}");
    // Clearing commands by the client id the token names is allowed (the operator's clean-up).
    let clear = client
        .put(format!("{}/applications/{id}/commands", sim.api_base()))
        .header("Authorization", &auth)
        .json(&json!([]))
        .send()
        .await
        .unwrap();
    assert_eq!(clear.status(), 200, "{}", clear.text().await.unwrap());
}

#[tokio::test]
async fn the_voice_gateway_refuses_a_bot_on_request() {
    let sim = world().start().await.unwrap();
    let bot = sim.bot(TOKEN);
    let mut gw = RawGateway::connect(&sim.gateway_url()).await;
    gw.identify(TOKEN).await;
    let (session_id, token, endpoint) = join(&mut gw).await;

    bot.refuse_voice(GUILD, true);
    let mut ws = dial(&endpoint, sim.ca_pem()).await.unwrap();
    assert!(matches!(recv(&mut ws).await, Some(Event::Hello(_))));
    ws.send(Message::text(serde_json::to_string(&identify(&session_id, &token)).unwrap())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(4004));
    assert_eq!(bot.voice_refusals(), 1);
    assert!(bot.voice(GUILD).is_some_and(|v| !v.ws_open));

    bot.refuse_voice(GUILD, false);
    let mut ws = dial(&endpoint, sim.ca_pem()).await.unwrap();
    assert!(matches!(recv(&mut ws).await, Some(Event::Hello(_))));
    ws.send(Message::text(serde_json::to_string(&identify(&session_id, &token)).unwrap())).await.unwrap();
    assert!(matches!(recv(&mut ws).await, Some(Event::Ready(_))), "accepted again once the fault is off");
    assert_eq!(bot.voice_refusals(), 1);
}
