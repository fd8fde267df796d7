//! `/health` (liveness), `/ready` (readiness), `/metrics`, `/status` (for the operator),
//! `/bots` (the seed's listing), and with a fleet key the fleet's two endpoints (the key as
//! a bearer token). Nothing here can show a token: reports hold none.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use musicbot_api::handoff::{DIRECTORY_PATH, FleetDirectory, HandoffAnswer, HandoffRequest, PLAY_PATH};

use crate::bot::Runtime;
use crate::fleet::{Fleet, SeatState};
use crate::handoff::{self, FleetLink};
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct App {
    fleet: Arc<Fleet>,
    metrics: Arc<Metrics>,
    fleet_link: Option<Arc<FleetLink>>,
}

impl App {
    pub fn new(fleet: Arc<Fleet>, rt: &Runtime) -> Self {
        Self { fleet, metrics: rt.metrics.clone(), fleet_link: rt.fleet_link.clone() }
    }
}

pub fn router(app: App) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/status", get(status))
        .route("/bots", get(bots))
        .route(DIRECTORY_PATH, post(directory))
        .route(PLAY_PATH, post(take))
        .with_state(app)
}

/// How long a client may take to send a request's headers, and how long a kept-alive
/// connection may sit idle before its next request (hyper runs the same timer while it
/// waits for the next request's head): a slow client cannot hold connections open.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a request may take: the longest `/ready` hold and some time to answer.
pub const REQUEST_TIMEOUT: Duration = MAX_READY_WAIT.saturating_add(Duration::from_secs(10));
/// Only the fleet's endpoints read a body (a request, a directory of a hundred bots);
/// a larger one is refused with 413 before any handler runs.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::TimeoutLayer;

    let app = router(app)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = http1.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that went away or timed out: nothing to do about it.
            let _ = conn.await;
        });
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
    Ok(())
}

async fn health(State(app): State<App>) -> Response {
    let h = app.fleet.health().await;
    let code = if h.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(h.body)).into_response()
}

/// Longest `/ready?wait=` honoured: a probe must not hold a connection for minutes.
pub const MAX_READY_WAIT: Duration = Duration::from_secs(30);
/// How often a held `/ready` looks at the gateway again.
const READY_POLL: Duration = Duration::from_millis(100);

#[derive(serde::Deserialize)]
struct ReadyQuery {
    /// Seconds to hold the request until the bot is ready (a startup probe's way of not
    /// failing, and so not raising a Warning Event, while the gateway connects).
    wait: Option<u64>,
    /// The startup probe's question: has the bot started, that is, connected or decided
    /// to wait for Discord to refill its identify budget? A held bot is not ready, but
    /// the kubelet must not restart it for that (which would not help, and its liveness
    /// probe takes over). bot-runners before this ignore the parameter.
    #[serde(default)]
    startup: bool,
}

async fn ready(State(app): State<App>, Query(q): Query<ReadyQuery>) -> Response {
    if wait_until_ready(requested_wait(q.wait), || app.fleet.ready(q.startup)).await {
        let held = q.startup && !app.fleet.ready(false).await;
        let body = if held { "started; waiting for Discord to refill the identify budget\n" } else { "ready\n" };
        (StatusCode::OK, body).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "gateway not ready\n").into_response()
    }
}

/// `?wait=` in seconds, capped at [`MAX_READY_WAIT`]; none: answer at once.
fn requested_wait(seconds: Option<u64>) -> Duration {
    Duration::from_secs(seconds.unwrap_or(0)).min(MAX_READY_WAIT)
}

/// True as soon as `ready` says so, checking at once and then every [`READY_POLL`] until
/// `wait` has passed.
pub async fn wait_until_ready<F, Fut>(wait: Duration, mut ready: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if ready().await {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep(READY_POLL.min(deadline - now)).await;
    }
}

async fn metrics_text(State(app): State<App>) -> Response {
    // Reports refresh the gauges before they are encoded.
    app.fleet.reports().await;
    app.metrics.fleet().set_bots(&app.fleet.by_state());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.encode())
        .into_response()
}

async fn status(State(app): State<App>) -> Json<musicbot_api::StatusReport> {
    Json(app.fleet.status().await)
}

async fn bots(State(app): State<App>) -> Json<serde_json::Value> {
    Json(app.fleet.bots().await)
}

/// The fleet's key checked: 503 without one (the process is in no fleet), 401 for a wrong
/// or missing one. Neither says anything of the key.
fn fleet_caller(app: &App, headers: &HeaderMap) -> Result<Arc<FleetLink>, (StatusCode, &'static str)> {
    let Some(link) = app.fleet_link.clone() else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "no fleet key configured\n"));
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !link.authorized(given) {
        return Err((StatusCode::UNAUTHORIZED, "unauthorized\n"));
    }
    Ok(link)
}

/// The body of a fleet request, read only once the key was checked: a stranger learns
/// nothing, not even what a valid body looks like.
fn fleet_body<T: serde::de::DeserializeOwned>(
    app: &App,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(Arc<FleetLink>, T), (StatusCode, String)> {
    let link = fleet_caller(app, headers).map_err(|(code, why)| (code, why.to_string()))?;
    let parsed =
        serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("not a fleet request: {e}\n")))?;
    Ok((link, parsed))
}

async fn directory(State(app): State<App>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    match fleet_body::<FleetDirectory>(&app, &headers, &body) {
        Ok((link, directory)) => {
            link.set_directory(directory);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refused) => refused.into_response(),
    }
}

async fn take(State(app): State<App>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let (link, request) = match fleet_body::<HandoffRequest>(&app, &headers, &body) {
        Ok(ok) => ok,
        Err(refused) => return refused.into_response(),
    };
    let bot = request.to.parse().ok().and_then(|id| app.fleet.seat(id)).and_then(|seat| match seat.state() {
        SeatState::Running(bot) => Some(bot),
        _ => None,
    });
    let answer = match bot {
        Some(bot) => handoff::take(&bot, &link, &request).await,
        None => HandoffAnswer::NotInGuild,
    };
    Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_held_ready_answers_when_the_bot_becomes_ready_or_when_the_wait_runs_out() {
        let calls = AtomicU32::new(0);
        let start = std::time::Instant::now();
        // Ready on the sixth look: answered then, long before the end of the wait.
        let ready = wait_until_ready(Duration::from_secs(9), || async { calls.fetch_add(1, Ordering::SeqCst) >= 5 });
        assert!(ready.await);
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        let took = start.elapsed();
        assert!(took >= READY_POLL * 5 && took < Duration::from_secs(5), "{took:?}");

        let start = std::time::Instant::now();
        assert!(!wait_until_ready(Duration::from_secs(1), || async { false }).await);
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(5), "{took:?}");

        // Already ready, or no wait asked for: one look, at once.
        let calls = AtomicU32::new(0);
        assert!(wait_until_ready(Duration::from_secs(9), || async { calls.fetch_add(1, Ordering::SeqCst) == 0 }).await);
        assert!(!wait_until_ready(Duration::ZERO, || async { calls.fetch_add(1, Ordering::SeqCst) > 100 }).await);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// Hostile: a client that trickles a header, sits on an idle connection or posts a
    /// large body does not hold the server.
    #[tokio::test]
    async fn slow_idle_and_oversized_requests_are_cut_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fleet = Fleet::new(Vec::new(), false, Duration::from_secs(60));
        let app = App { fleet, metrics: Arc::new(Metrics::default()), fleet_link: None };
        tokio::spawn(serve(listener, app, std::future::pending()));
        // Reads until the server closes the connection, or gives up after `within`.
        async fn closed_within(conn: &mut tokio::net::TcpStream, within: Duration) -> Option<(Duration, Vec<u8>)> {
            let start = std::time::Instant::now();
            let mut got = Vec::new();
            let read = async {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = conn.read(&mut buf).await {
                    got.extend_from_slice(&buf[..n]);
                }
            };
            tokio::time::timeout(within, read).await.ok()?;
            Some((start.elapsed(), got))
        }
        let limit = HEADER_READ_TIMEOUT + Duration::from_secs(5);

        let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
        partial.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        let (took, _) = closed_within(&mut partial, limit).await.expect("a partial header is cut off");
        assert!(took >= HEADER_READ_TIMEOUT - Duration::from_millis(500), "{took:?}");

        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let (_, answer) = closed_within(&mut idle, limit).await.expect("an idle connection is closed");
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));

        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let big = vec![b'x'; MAX_BODY_BYTES + 1];
        let resp = http.post(format!("http://{addr}/health")).body(big).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let small = http.get(format!("http://{addr}/health")).send().await.unwrap();
        assert_eq!(small.status(), StatusCode::OK, "the server still answers");
    }

    #[test]
    fn the_wait_is_capped() {
        assert_eq!(requested_wait(None), Duration::ZERO);
        assert_eq!(requested_wait(Some(9)), Duration::from_secs(9));
        assert_eq!(requested_wait(Some(3600)), MAX_READY_WAIT);
        assert_eq!(requested_wait(Some(u64::MAX)), MAX_READY_WAIT);
    }

    /// Hostile: the fleet's endpoints answer nobody without the key, and nothing at all in
    /// a process that has none; neither answer says anything of the key.
    #[tokio::test]
    async fn the_fleet_endpoints_want_the_fleet_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "k2Vx4u1cYtq3mB0sWf9hZrPL").unwrap();
        let link = Arc::new(FleetLink::from_file(&dir.path().join("key")).unwrap());
        let http = reqwest::Client::new();
        let directory = serde_json::json!({"fleet": "f", "bots": []});
        for (link, want) in [(None, StatusCode::SERVICE_UNAVAILABLE), (Some(link), StatusCode::UNAUTHORIZED)] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let fleet = Fleet::new(Vec::new(), false, Duration::from_secs(60));
            let app = App { fleet, metrics: Arc::new(Metrics::default()), fleet_link: link.clone() };
            tokio::spawn(serve(listener, app, std::future::pending()));
            for path in [DIRECTORY_PATH, PLAY_PATH] {
                let r = http.post(format!("{base}{path}")).bearer_auth("guess").json(&directory).send().await.unwrap();
                assert_eq!(r.status(), want, "{path}");
                assert!(!r.text().await.unwrap().contains("k2Vx"));
            }
            if let Some(link) = link {
                let ok = http.post(format!("{base}{DIRECTORY_PATH}")).bearer_auth("k2Vx4u1cYtq3mB0sWf9hZrPL");
                assert_eq!(ok.json(&directory).send().await.unwrap().status(), StatusCode::NO_CONTENT);
                assert_eq!(link.fleet(), "f");
            }
        }
    }

    #[tokio::test]
    async fn ready_over_http_holds_the_request_as_asked_and_refuses_a_wait_that_is_not_a_number() {
        // A fleet without bots is never ready.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fleet = Fleet::new(Vec::new(), false, Duration::from_secs(60));
        let app = App { fleet, metrics: Arc::new(Metrics::default()), fleet_link: None };
        tokio::spawn(serve(listener, app, std::future::pending()));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
        let get = |path: &'static str| {
            let (http, url) = (http.clone(), format!("{base}{path}"));
            async move {
                let start = std::time::Instant::now();
                let status = http.get(url).send().await.unwrap().status();
                (status, start.elapsed())
            }
        };
        let (status, took) = get("/ready").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(took < Duration::from_secs(1), "{took:?}");
        let (status, took) = get("/ready?wait=2").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(8), "{took:?}");
        assert_eq!(get("/ready?wait=soon").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(get("/ready?wait=-1").await.0, StatusCode::BAD_REQUEST);
    }
}
