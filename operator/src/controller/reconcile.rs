//! The I/O shell of reconcile: read the token Secret, apply the desired StatefulSet, ask
//! the bot pods how they are, write status, publish Events. Decisions live in the pure
//! modules beside this one.

use super::identify::{self, Budget};
use super::status::{self, Observed, PodReport};
use super::token::TokenProblem;
use super::{Context, Error, FIELD_MANAGER, fleet, token, workload};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use musicbot_api::conditions::Reason;
use musicbot_api::crd::{MusicBot, MusicBotStatus, Phase};
use musicbot_api::labels;
use musicbot_api::report::StatusReport;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

pub async fn reconcile(bot: Arc<MusicBot>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let ns = bot.namespace().ok_or(Error::NotNamespaced)?;
    let api: Api<MusicBot> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, labels::FINALIZER, bot, |event| async {
        match event {
            Finalizer::Apply(bot) => apply(&bot, &ctx).await,
            Finalizer::Cleanup(bot) => cleanup(&bot, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.observe_reconcile(started.elapsed(), result.as_ref().err().map(Error::kind));
    result
}

async fn apply(bot: &MusicBot, ctx: &Context) -> Result<Action, Error> {
    let remembered = with_remembered_hold(bot, ctx);
    let bot = remembered.as_ref().unwrap_or(bot);
    let token = resolve_token(bot, ctx).await?;
    let image = workload::check_image(bot, &ctx.defaults).err();
    let now = now();
    let clock = chrono::DateTime::from_timestamp(now.0.as_second(), 0).unwrap_or_default();
    // A hold for the identify budget keeps the pods stopped until its time.
    let held_before = identify::current_hold(bot, clock).is_some();
    // Without a usable token or with an image that may not run there is nothing to run;
    // an existing StatefulSet is left as it is (its pod still has the last good token and
    // image) until the Secret or the spec is fixed.
    // The pods mount the fleet's key: it exists before they do, and a new key (the Secret
    // deleted to rotate it) rolls them, as a new token does: bot-runner reads both once.
    let fleet_key = match (&token, &image) {
        (Ok(_), None) => match fleet::ensure_key(bot, ctx).await {
            Ok(key) => Some(key),
            // The bot runs without hand-offs (its pods mount the key as optional).
            Err(e) => {
                warn!(fleet = bot.spec.fleet_name(), error = %e, "could not make or read the fleet's key");
                None
            }
        },
        _ => None,
    };
    let secrets_digest = match (&token, &fleet_key) {
        (Ok(digest), Some(key)) => Ok(crate::digest::short(&[digest.as_bytes(), key.as_bytes()])),
        (Ok(digest), None) => Ok(digest.clone()),
        (Err(e), _) => Err(e),
    };
    let mut statefulset = match (&secrets_digest, &image) {
        (Ok(digest), None) => Some(apply_statefulset(bot, digest, held_before, ctx).await?),
        (Err(problem), _) => {
            warn!(reason = %problem.reason(), "token not resolved: {problem}");
            None
        }
        (Ok(_), Some(refused)) => {
            warn!(reason = %Reason::ImageNotAllowed, "{refused}");
            None
        }
    };
    let pods = match &statefulset {
        Some(sts) if !bot.spec.suspended && seen_by_its_controller(sts) => bot_pods(bot, ctx).await?,
        _ => Vec::new(),
    };
    let reports = bot_reports(&pods, ctx).await;
    track_guilds(bot, &reports, ctx).await;
    if let Some(key) = &fleet_key
        && let Err(e) = fleet::push_directory(bot, key, ctx).await
    {
        warn!(fleet = bot.spec.fleet_name(), error = %e, "could not tell the fleet's pods their directory");
    }
    let budget = identify::budget(bot, &pods, &reports, clock);
    if let (Budget::Held(hold), Ok(digest), Some(_), false) = (&budget, &secrets_digest, &statefulset, held_before) {
        // A pod crash-loops with its reserve of identifies left: no more restarts until
        // Discord's reset.
        warn!(pod = ?hold.pod, until = %identify::format_time(hold.until), "holding a crash-looping bot for its identify budget");
        statefulset = Some(apply_statefulset(bot, digest, true, ctx).await?);
        let key = (bot.namespace().unwrap_or_default(), bot.name_any());
        ctx.holds.lock().expect("holds lock").insert(key, hold.until);
    }
    let observed = Observed {
        token: &token,
        image: image.as_ref(),
        statefulset: statefulset.as_ref(),
        pods: &pods,
        reports: &reports,
        budget: &budget,
        now,
    };
    let new_status = status::compute(bot, &observed);
    publish_notices(bot, bot.status.as_ref(), &new_status, ctx).await;
    write_status(bot, &new_status, ctx).await?;
    let action = match budget.held() {
        // Back at the hold's end, to scale the pods up again on time.
        Some(hold) => {
            let left = (hold.until - clock).to_std().unwrap_or_default() + Duration::from_secs(1);
            Action::requeue(left.min(ctx.status_interval.max(Duration::from_secs(1))))
        }
        None => requeue(new_status.phase, ctx),
    };
    Ok(action)
}

/// `bot` with the identify hold this operator set on it, when its status (from the cache)
/// does not show it yet: a reconcile right after the hold, woken by the StatefulSet it
/// scaled down, must not scale it up again. `None`: the status is as good.
fn with_remembered_hold(bot: &MusicBot, ctx: &Context) -> Option<MusicBot> {
    let key = (bot.namespace().unwrap_or_default(), bot.name_any());
    let until = *ctx.holds.lock().expect("holds lock").get(&key)?;
    let shown = bot.status.as_ref().and_then(|s| s.identify_held_until.as_deref()).and_then(identify::parse_time);
    if until <= chrono::Utc::now() || shown.is_some_and(|s| s >= until) {
        return None;
    }
    let mut bot = bot.clone();
    bot.status.get_or_insert_default().identify_held_until = Some(identify::format_time(until));
    Some(bot)
}

/// The token the bot's Secret holds, as a salted digest, or why there is none.
async fn resolve_token(bot: &MusicBot, ctx: &Context) -> Result<Result<String, TokenProblem>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &bot.namespace().ok_or(Error::NotNamespaced)?);
    let secret_ref = &bot.spec.token_secret_ref;
    let secret = secrets.get_opt(&secret_ref.name).await?;
    let salt = bot.uid().unwrap_or_default();
    Ok(token::resolve(secret.as_ref(), &secret_ref.name, &secret_ref.key, &bot.spec.client_id, &salt))
}

async fn apply_statefulset(
    bot: &MusicBot,
    token_digest: &str,
    held: bool,
    ctx: &Context,
) -> Result<StatefulSet, Error> {
    let desired = workload::statefulset(bot, &ctx.defaults, token_digest);
    let desired = if held { workload::held(desired) } else { desired };
    let sts: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &bot.namespace().ok_or(Error::NotNamespaced)?);
    let name = bot.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied = match sts.patch(&name, &params, &Patch::Apply(&desired)).await {
        // A StatefulSet's claim templates cannot change (`spec.session` added or removed):
        // it is deleted leaving its pods, and made again, which adopts and then rolls them.
        Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains("Forbidden: updates to statefulset spec") => {
            info!(statefulset = %name, "claim templates changed; recreating the StatefulSet, its pods kept");
            let orphan = kube::api::DeleteParams {
                propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
                ..Default::default()
            };
            sts.delete(&name, &orphan).await?;
            sts.patch(&name, &params, &Patch::Apply(&desired)).await?
        }
        other => other?,
    };
    ctx.seen_statefulsets.saw(&applied);
    Ok(applied)
}

/// Whether Kubernetes' StatefulSet controller has acted on `sts` yet. Until it has, the
/// StatefulSet has made no pods (its first status update brings the bot back), so a new
/// bot is spared a pod list that can only come back empty.
fn seen_by_its_controller(sts: &StatefulSet) -> bool {
    sts.status.as_ref().and_then(|s| s.observed_generation).is_some()
}

/// Writes `new` unless the bot already shows it, and keeps the phase metric current.
async fn write_status(bot: &MusicBot, new: &MusicBotStatus, ctx: &Context) -> Result<(), Error> {
    let (ns, name) = (bot.namespace().ok_or(Error::NotNamespaced)?, bot.name_any());
    if bot.status.as_ref() != Some(new) {
        let api: Api<MusicBot> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": "musicbot.dev/v1alpha1",
            "kind": "MusicBot",
            "status": new,
        });
        api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    }
    ctx.metrics.set_phase(&ns, &name, new.phase);
    Ok(())
}

fn requeue(phase: Option<Phase>, ctx: &Context) -> Action {
    match phase {
        // The Secret watch brings us back as soon as the token is fixed.
        Some(Phase::Failed) => Action::requeue(Duration::from_secs(300)),
        Some(Phase::Running) => Action::requeue(ctx.status_interval),
        Some(Phase::Suspended) => Action::requeue(Duration::from_secs(600)),
        // Pods becoming ready change the StatefulSet, whose watch brings us back: polling
        // here only adds load (1,000 pending bots would mean 100 reconciles a second).
        _ => Action::requeue(ctx.status_interval),
    }
}

/// The bot's pods, by the StatefulSet's selector labels.
async fn bot_pods(bot: &MusicBot, ctx: &Context) -> Result<Vec<Pod>, Error> {
    let ns = bot.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let selector =
        labels::selector_labels(&bot.name_any()).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    Ok(pods.list(&ListParams::default().labels(&selector)).await?.items)
}

/// `/status` of every running pod with an address, ready or not: a pod that is not ready
/// is the one whose answer says why. Pods that do not answer are left out.
async fn bot_reports(pods: &[Pod], ctx: &Context) -> Vec<PodReport> {
    let targets: Vec<(String, String)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            (status.phase.as_deref() == Some("Running")).then_some(())?;
            let url = format!("http://{}/status", join_host_port(status.pod_ip.as_deref()?, ctx.defaults.http_port));
            Some((p.name_any(), url))
        })
        .collect();
    let fetches = targets.iter().map(|(pod, url)| async move {
        let resp = ctx.http.get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
        // A redirect is not followed (the client's policy) and is no answer either.
        let resp = resp.error_for_status().ok().filter(|r| r.status().is_success())?;
        let Some(body) = read_limited(resp, MAX_STATUS_BYTES).await else {
            warn!(pod = %pod, limit = MAX_STATUS_BYTES, "a bot pod's /status answer is too large or broke off: ignored");
            return None;
        };
        let report = match serde_json::from_slice::<StatusReport>(&body) {
            Ok(report) => report,
            Err(e) => {
                warn!(pod = %pod, error = %e, "a bot pod's /status answer does not parse: is it running another version?");
                return None;
            }
        };
        Some(PodReport { pod: pod.clone(), report })
    });
    futures::future::join_all(fetches).await.into_iter().flatten().collect()
}

/// Writes the guilds the pods report to MongoDB, within a bound: a database that does not
/// answer delays the bot's status by seconds, not by the driver's 30 s server selection.
async fn track_guilds(bot: &MusicBot, reports: &[PodReport], ctx: &Context) {
    let Some(guilds) = &ctx.guilds else { return };
    if tokio::time::timeout(Duration::from_secs(10), guilds.sync(&bot.spec.client_id, reports)).await.is_err() {
        warn!("guild tracking: MongoDB did not answer within 10 s; retrying later");
    }
}

/// A real `/status` answer is a few KiB per bot; a pod answering more is not a bot-runner
/// the operator should spend memory on.
const MAX_STATUS_BYTES: usize = 1 << 20;

/// The body, if it ends within `limit` bytes. Read chunk by chunk and dropped past the limit,
/// so a huge (or endless) answer costs `limit` bytes of memory at most. Hand-written:
/// reqwest has no body limit, and these few lines spare wrapping its body for http-body-util.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return None;
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.ok()? {
        if body.len() + chunk.len() > limit {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

pub(super) fn join_host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

async fn publish_notices(bot: &MusicBot, old: Option<&MusicBotStatus>, new: &MusicBotStatus, ctx: &Context) {
    for notice in status::notices(old, new) {
        let event = Event {
            type_: if notice.warning { EventType::Warning } else { EventType::Normal },
            reason: notice.reason.as_str().into(),
            note: Some(notice.note),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &bot.object_ref(&())).await {
            warn!("could not publish Event {}: {e}", notice.reason);
        }
    }
}

async fn cleanup(bot: &MusicBot, ctx: &Context) -> Result<Action, Error> {
    let name = bot.name_any();
    if bot.spec.clear_commands_on_delete {
        match super::commands::clear(bot, ctx).await {
            Ok(()) => info!("cleared the bot's slash commands"),
            // Deletion must not hang on Discord being unreachable or the token gone.
            Err(e) => warn!("could not clear slash commands: {e}"),
        }
    }
    let event = Event {
        type_: EventType::Normal,
        reason: Reason::Deleted.as_str().into(),
        note: Some("MusicBot deleted; its StatefulSet is garbage-collected".into()),
        action: "Cleanup".into(),
        secondary: None,
    };
    let _ = ctx.recorder.publish(&event, &bot.object_ref(&())).await;
    ctx.metrics.forget(&bot.namespace().unwrap_or_default(), &name);
    ctx.seen_statefulsets.forget(&bot.namespace().unwrap_or_default(), &name);
    ctx.holds.lock().expect("holds lock").remove(&(bot.namespace().unwrap_or_default(), name.clone()));
    if let Some(guilds) = &ctx.guilds {
        guilds.forget(&bot.spec.client_id);
    }
    Ok(Action::await_change())
}

/// Whole seconds, as the API server stores a condition's time: a status read back then
/// equals the one written, and an unchanged bot writes nothing.
fn now() -> Time {
    Time(Timestamp::from_second(chrono::Utc::now().timestamp()).expect("the clock is within jiff's range"))
}
