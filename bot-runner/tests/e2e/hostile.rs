//! The hostile suite (see docs/testing.md): what a Discord user can make the bot do with
//! `/play`. Internal addresses are refused however they are reached, every request is
//! answered in time however the server behaves, and one guild cannot hog the lookups.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::support::*;

/// A TCP server that accepts and never answers.
async fn silent_server() -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok((addr, task))
}

/// A server that answers every request with a redirect to `to`.
async fn redirecting_server(to: String) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let answer =
                format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 2048];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    Ok(addr)
}

#[tokio::test]
async fn internal_addresses_are_refused_however_they_are_reached_and_nothing_is_echoed() -> anyhow::Result<()> {
    // Only the redirecting server's own address is allowed; everything else on loopback is
    // internal, as in a pod.
    let hop = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hop_addr = hop.local_addr()?;
    drop(hop);
    let sim = world().start().await?;
    let mut bot = BotProcess::start(&sim, Launch::bot(APP).env("MUSICBOT_MEDIA_ALLOW", "192.0.2.1/32")).await?;
    bot.wait_ready().await?;
    let b = sim.bot(&bot.token);
    let own_status = format!("{}/status.mp3", bot.base());
    let redirect = redirecting_server(format!("{own_status}?via=redirect")).await?;
    let cases = [
        own_status.clone(),
        own_status.replace("127.0.0.1", "localhost"),
        own_status.replace("127.0.0.1", "[::ffff:127.0.0.1]"),
        "http://169.254.169.254/latest/meta-data/iam.mp3".to_string(),
        format!("http://{hop_addr}/page"),
        format!("http://{redirect}/tone.mp3"),
    ];
    for query in cases {
        let i = b.inject_interaction(play(&query))?;
        let r = sim.wait_reply(i.id, WAIT).await?;
        let text = r.text();
        assert!(
            text.contains("public addresses") || text.contains("couldn't"),
            "{query}: the bot should refuse an internal address: {text:?}"
        );
        for leak in ["404", "200", "127.0.0.1", "status"] {
            assert!(!text.contains(leak), "{query}: the reply echoes {leak:?}: {text:?}");
        }
    }
    // The bot never fetched its own endpoint.
    assert!(!bot.logs().contains("/status.mp3 "), "{}", bot.logs());
    Ok(())
}

#[tokio::test]
async fn a_server_that_never_answers_gets_the_user_an_answer_in_time() -> anyhow::Result<()> {
    let (silent, _task) = silent_server().await?;
    let sim = world().start().await?;
    let mut bot = BotProcess::start(&sim, Launch::bot(APP).env("MUSICBOT_RESOLVE_TIMEOUT_SECONDS", "3")).await?;
    bot.wait_ready().await?;
    let b = sim.bot(&bot.token);
    let started = Instant::now();
    let direct = b.inject_interaction(play(&format!("http://{silent}/song.mp3")))?;
    let page = b.inject_interaction(play(&format!("http://{silent}/watch?v=1")))?;
    for (what, i) in [("an audio file", direct), ("a page for yt-dlp", page)] {
        let r = sim.wait_reply(i.id, Duration::from_secs(30)).await?;
        assert!(r.text().contains("too long") || r.text().contains("couldn't"), "{what}: {:?}", r.text());
    }
    let took = started.elapsed();
    // The 3 s bound, not the 15 s read timeout, nor yt-dlp's own 20 s.
    assert!(took < Duration::from_secs(12), "answered after {took:?}");
    Ok(())
}

#[tokio::test]
async fn one_guild_cannot_hold_every_lookup() -> anyhow::Result<()> {
    let (silent, _task) = silent_server().await?;
    let sim = world().start().await?;
    let mut bot = BotProcess::start(&sim, Launch::bot(APP).env("MUSICBOT_RESOLVE_TIMEOUT_SECONDS", "20")).await?;
    bot.wait_ready().await?;
    let b = sim.bot(&bot.token);
    // Two lookups of the guild hang on the silent server; the third is told to wait at once.
    let hanging: Vec<_> = (0..2)
        .map(|n| b.inject_interaction(play(&format!("http://{silent}/song-{n}.mp3"))))
        .collect::<Result<_, _>>()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let third = b.inject_interaction(play(&format!("http://{silent}/song-3.mp3")))?;
    let r = sim.wait_reply(third.id, Duration::from_secs(10)).await?;
    assert!(r.text().contains("try again in a moment"), "{:?}", r.text());
    for i in hanging {
        let r = sim.wait_reply(i.id, Duration::from_secs(40)).await?;
        assert!(r.text().contains("too long") || r.text().contains("couldn't"), "{:?}", r.text());
    }
    Ok(())
}

#[tokio::test]
async fn yt_dlp_runs_with_nothing_to_steal() -> anyhow::Result<()> {
    // Outside /tmp, $HOME and the system's directories, as the token's own directory is in a
    // pod (/var/run/secrets/musicbot).
    let outside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let secrets = outside.path().join("secrets");
    std::fs::create_dir_all(&secrets)?;
    let token_file = secrets.join("token");
    std::fs::write(&token_file, format!("{}\n", token_for(APP)))?;
    let sim = world().start().await?;
    let tones = Tones::start().await?;
    // A stand-in for yt-dlp that tells, as its track's title, what it could see.
    let bin = outside.path().join("fake-ytdlp/bin");
    std::fs::create_dir_all(&bin)?;
    let fake = bin.join("yt-dlp");
    let tone = tones.wav(440, 3);
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n\
             if cat '{token}' >/dev/null 2>&1; then t=readable; else t=unreadable; fi\n\
             n=$(env | grep -c '^MUSICBOT_')\n\
             printf '{{\"title\": \"token %s, %s MUSICBOT variables, first argument %s\", \"url\": \"{tone}\", \"duration\": 3}}\\n' \"$t\" \"$n\" \"$1\"\n",
            token = token_file.display()
        ),
    )?;
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    // The bot itself can read its token there.
    let mut bot = BotProcess::start(
        &sim,
        Launch::bot(APP)
            .env("MUSICBOT_TOKEN_FILE", token_file.display().to_string())
            .env("MUSICBOT_YTDLP", fake.display().to_string()),
    )
    .await?;
    bot.wait_ready().await?;
    let b = sim.bot(&bot.token);
    let i = b.inject_interaction(play("http://media.example/watch?v=1"))?;
    let r = sim.wait_reply(i.id, WAIT).await?;
    assert!(
        r.text().contains("token unreadable, 0 MUSICBOT variables, first argument --ignore-config"),
        "yt-dlp saw more than it should: {:?}",
        r.text()
    );
    Ok(())
}

/// A server that says it has a large file and then sends it a byte every half second.
async fn trickling_server() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let n = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await.unwrap_or(0);
                let head = b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nContent-Length: 100000000\r\n\r\n";
                if socket.write_all(head).await.is_err() || buf[..n].starts_with(b"HEAD") {
                    return;
                }
                for _ in 0..600 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if socket.write_all(b"\0").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// A server whose file is 50 GB, by its own account.
async fn huge_file_server() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
            let head = "HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nContent-Length: 53687091200\r\nConnection: close\r\n\r\n";
            let _ = socket.write_all(head.as_bytes()).await;
        }
    });
    Ok(addr)
}

/// A page linking 3,000 tracks: yt-dlp's generic extractor sees a huge playlist.
async fn huge_playlist_server(tone: String) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let links: String = (0..3000).map(|n| format!("<audio src=\"{tone}?n={n}\"></audio>\n")).collect();
    let page = format!("<html><head><title>everything</title></head><body>\n{links}</body></html>");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let page = page.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    page.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(page.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

/// Resident memory of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test]
async fn twenty_hostile_plays_at_once_are_all_answered_and_the_music_elsewhere_goes_on() -> anyhow::Result<()> {
    use discord_sim::{DiscordSim, GuildSpec, SlashCommand, UserSpec};
    const POD_LIMIT: u64 = 256 << 20;
    // Five guilds with a listener in voice each, besides the one where music plays.
    let rooms: Vec<(u64, u64, u64, u64)> =
        (1..=5u64).map(|n| (GUILD + 100 * n, GUILD + 100 * n + 11, GUILD + 100 * n + 12, ALICE + 1000 * n)).collect();
    let room = |&(guild, text, voice, user): &(u64, u64, u64, u64)| {
        GuildSpec::new(guild, format!("Hostile {guild}"))
            .text_channel(text, "general")
            .voice_channel(voice, "Music")
            .member(UserSpec::new(user, "mallory"))
            .in_voice(user, voice)
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = rooms.iter().fold(DiscordSim::builder().guild(guild()), |b, r| b.guild(room(r)));
    let bot = rooms.iter().fold(bot_spec(APP).in_guild(GUILD), |b, r| b.in_guild(r.0));
    let sim = sim.bot(bot).start().await?;
    let tones = Tones::start().await?;
    let mut process = BotProcess::start(&sim, Launch::bot(APP).env("MUSICBOT_RESOLVE_TIMEOUT_SECONDS", "4")).await?;
    process.wait_ready().await?;
    let b = sim.bot(&process.token);
    start_playing(&sim, &b, &tones).await?;

    let (silent, _silent) = silent_server().await?;
    let trickle = trickling_server().await?;
    let huge_file = huge_file_server().await?;
    let playlist = huge_playlist_server(tones.wav(440, 3)).await?;
    let hostile = [
        format!("http://{silent}/never.mp3"),
        format!("http://{trickle}/slow.mp3"),
        format!("http://{huge_file}/huge.mp3"),
        format!("http://{playlist}/everything"),
    ];
    let heard_before = b.audio(GUILD).audible_seconds;
    let started = Instant::now();
    let mut asked = Vec::new();
    for (n, query) in hostile.iter().cycle().take(20).enumerate() {
        let (guild, text, _, user) = rooms[n % rooms.len()];
        let i = b.inject_interaction(SlashCommand::new(guild, text, user, "play").option("query", query.as_str()))?;
        asked.push((query.clone(), i.id));
    }
    let pid = process.pid();
    let mut peak = rss_bytes(pid);
    for (query, id) in asked {
        let reply = loop {
            peak = peak.max(rss_bytes(pid));
            match sim.wait_reply(id, Duration::from_millis(200)).await {
                Ok(r) => break r,
                Err(_) if started.elapsed() < Duration::from_secs(60) => continue,
                Err(e) => return Err(e.context(format!("no answer to /play {query}"))),
            }
        };
        assert!(!reply.text().is_empty(), "/play {query} got an empty answer");
    }
    let answered_in = started.elapsed();
    eprintln!("20 hostile /plays answered within {answered_in:?}; bot-runner's RSS peaked at {} MiB", peak >> 20);
    // Within the 4 s bound (and the simulator's own pace), not the 15 s read timeout.
    assert!(answered_in < Duration::from_secs(12), "the last answer came after {answered_in:?}");
    // The music in the first guild went on meanwhile: as much audio as time passed, nearly.
    let heard = b.wait_for_audio(GUILD, heard_before + answered_in.as_secs_f64() * 0.8, WAIT).await?;
    assert!(near(heard.dominant_hz, 440.0), "{heard:?}");
    assert!(peak < POD_LIMIT, "bot-runner peaked at {} MiB, over the pod's limit", peak >> 20);
    Ok(())
}

/// A server on loopback that counts the connections made to it and answers none.
async fn counting_server() -> anyhow::Result<(std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    Ok((addr, hits))
}

#[tokio::test]
async fn yt_dlp_cannot_reach_a_page_whose_name_resolves_internally() -> anyhow::Result<()> {
    // `localhost` is a name, so /play hands it to yt-dlp; only the proxy between yt-dlp and
    // the network resolves it and sees loopback.
    let (internal, hits) = counting_server().await?;
    let sim = world().start().await?;
    let mut bot = BotProcess::start(&sim, Launch::bot(APP).env("MUSICBOT_MEDIA_ALLOW", "192.0.2.1/32")).await?;
    bot.wait_ready().await?;
    let b = sim.bot(&bot.token);
    let i = b.inject_interaction(play(&format!("http://localhost:{}/page", internal.port())))?;
    let text = sim.wait_reply(i.id, WAIT).await?.text();
    assert!(text.contains("couldn't") || text.contains("public addresses"), "{text:?}");
    assert!(!text.contains("403") && !text.contains("127.0.0.1"), "the reply echoes the refusal: {text:?}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "yt-dlp reached the internal server");
    Ok(())
}

#[tokio::test]
async fn yt_dlp_plays_a_page_by_name_where_its_range_is_allowed() -> anyhow::Result<()> {
    // The default launch allows loopback (MUSICBOT_MEDIA_ALLOW=127.0.0.0/8): the proxy lets
    // the same kind of request through, and the page's tone plays.
    let Scene { sim, tones, bot } = Scene::start(Launch::bot(APP)).await?;
    let b = sim.bot(&bot.token);
    let page = tones.page(660, 6).replace("127.0.0.1", "localhost");
    let reply = sim.wait_reply(b.inject_interaction(play(&page))?.id, WAIT).await?;
    assert_eq!(reply.text(), "Playing **6**", "{reply:?}");
    let heard = b.wait_for_audio(GUILD, 2.0, WAIT).await?;
    assert!(near(heard.dominant_hz, 660.0), "{heard:?}");
    Ok(())
}
