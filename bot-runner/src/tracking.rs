//! Guild tracking in MongoDB, off the gateway's path: events go through a channel to one
//! task that writes them in order and refreshes `guildCount` once a burst is written (a
//! (re)connect replays GUILD_CREATE for every guild). Closing the channel flushes it.
//! Only when bot-runner is given a MongoDB URI by hand: in Kubernetes the operator tracks
//! guilds from each pod's `/status`, and bot pods hold no URI.

use musicbot_db::GuildTracker;
use musicbot_db::guilds::shard_of;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

#[derive(Debug)]
pub enum GuildEvent {
    Joined(u64),
    Left(u64),
    /// The guilds present once every GUILD_CREATE after READY arrived (each one a `Joined`
    /// already); the shard is `(id, count)`.
    Present(Vec<u64>, (u32, u32)),
}

pub struct Tracking {
    tx: mpsc::UnboundedSender<GuildEvent>,
    task: JoinHandle<()>,
}

impl Tracking {
    pub fn start(tracker: GuildTracker, bot: String) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(tracker, bot, rx));
        Self { tx, task }
    }

    pub fn send(&self, event: GuildEvent) {
        let _ = self.tx.send(event);
    }

    /// Writes what is queued, then stops.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

#[tracing::instrument(name = "tracking", skip_all, fields(bot = %bot))]
async fn run(tracker: GuildTracker, bot: String, mut rx: mpsc::UnboundedReceiver<GuildEvent>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut changed = false;
        for event in batch {
            let result = match &event {
                GuildEvent::Joined(g) => tracker.joined(*g).await.map(|_| true),
                GuildEvent::Left(g) => tracker.left(*g).await.map(|_| true),
                GuildEvent::Present(guilds, (id, count)) => {
                    let (id, count) = (*id, *count);
                    tracker.left_while_offline(guilds, |g| shard_of(g, count) == id).await.map(|gone| {
                        if !gone.is_empty() {
                            info!(?gone, "left these guilds while offline");
                        }
                        true
                    })
                }
            };
            match result {
                Ok(c) => changed |= c,
                // MongoDB trouble must not stop the music: log and carry on.
                Err(e) => warn!(?event, error = %e, "guild tracking write failed"),
            }
        }
        if changed {
            match tracker.refresh_guild_count().await {
                Ok(n) => debug!(guilds = n, "guildCount updated"),
                Err(e) => warn!(error = %e, "updating guildCount failed"),
            }
        }
    }
}
