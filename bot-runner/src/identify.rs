//! The identify budget governor. Discord allows a token 1,000 IDENTIFYs a day
//! (`session_start_limit` of `GET /gateway/bot`) and resets the token of a bot that asks for
//! more, which a crash-looping pod does in a few hours. Before each start of its gateway the
//! bot reads that budget, and when no more than `--identify-reserve` is left it does not
//! identify: it waits, up and reporting, until Discord refills the budget.
//!
//! Only the identifies bot-runner makes go through here (each start of the client). serenity
//! identifies again by itself when a session cannot be resumed (op 9, 4007, 4009): those
//! are left to it, as they are rare and needed to stay online.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serenity::all::Http;
use serenity::model::gateway::SessionStartLimit;
use tracing::{info, warn};

use crate::bot::Bot;

/// How long after Discord's reset the bot looks again: clocks differ, and a look a moment
/// too early only costs another wait.
const AFTER_RESET: Duration = Duration::from_secs(2);
/// What to do with a budget that has `remaining` identifies left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Identify,
    /// Wait this long, then look again.
    Hold(Duration),
}

/// Identify while more than `reserve` identifies are left; else wait for the reset. Zero
/// left is always a hold: one more IDENTIFY would have Discord reset the token.
pub fn decide(limit: &SessionStartLimit, reserve: u64) -> Decision {
    if limit.remaining > reserve {
        Decision::Identify
    } else {
        Decision::Hold(Duration::from_millis(limit.reset_after) + AFTER_RESET)
    }
}

/// What the bot last learned of its budget, for `/status` and the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Left after the bot's own identify, if it made one then.
    pub remaining: Option<u64>,
    pub reset_at: Option<DateTime<Utc>>,
    /// While the bot waits: when it looks again.
    pub held_until: Option<DateTime<Utc>>,
}

impl Seen {
    pub fn remaining(&self) -> Option<u64> {
        self.remaining
    }

    pub fn reset_at(&self) -> Option<String> {
        self.reset_at.map(rfc3339)
    }

    pub fn held_until(&self) -> Option<String> {
        self.held_until.map(rfc3339)
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn after(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(1))
}

/// Waits until the bot may identify: returns false if the bot was stopped meanwhile.
/// Logs a hold once, when it begins, and counts it.
pub async fn wait_for_budget(bot: &Bot, http: &Http) -> bool {
    let reserve = bot.identify_reserve;
    let mut holding = false;
    loop {
        let limit = match http.get_bot_gateway().await {
            Ok(gateway) => gateway.session_start_limit,
            Err(e) => {
                // Discord is unreachable (the gateway then is too, and serenity retries it)
                // or refuses the token (the IDENTIFY fails with 4004 and says so).
                warn!(error = %e, "could not read the identify budget (GET /gateway/bot); identifying without it");
                bot.set_identify(Seen::default());
                return !bot.is_stopping();
            }
        };
        bot.metrics.set_identifies_remaining(limit.remaining);
        let reset_at = after(Duration::from_millis(limit.reset_after));
        match decide(&limit, reserve) {
            Decision::Identify => {
                if holding {
                    info!(remaining = limit.remaining, "identify budget refilled; connecting");
                }
                let left = limit.remaining.saturating_sub(1);
                bot.metrics.set_identifies_remaining(left);
                bot.set_identify(Seen { remaining: Some(left), reset_at: Some(reset_at), held_until: None });
                return !bot.is_stopping();
            }
            Decision::Hold(wait) => {
                let until = after(wait);
                if !holding {
                    holding = true;
                    bot.metrics.identify_holds.inc();
                    warn!(
                        remaining = limit.remaining,
                        total = limit.total,
                        reserve,
                        until = %rfc3339(until),
                        "identify budget at its reserve: not connecting to the gateway until Discord resets it"
                    );
                }
                bot.set_identify(Seen {
                    remaining: Some(limit.remaining),
                    reset_at: Some(reset_at),
                    held_until: Some(until),
                });
                if !bot.pause(wait).await {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(remaining: u64, reset_after: u64) -> SessionStartLimit {
        // Non-exhaustive in serenity: read as Discord sends it.
        serde_json::from_value(serde_json::json!({
            "remaining": remaining, "reset_after": reset_after, "total": 1000, "max_concurrency": 1
        }))
        .unwrap()
    }

    #[test]
    fn the_bot_identifies_above_its_reserve_and_waits_for_the_reset_at_it() {
        assert_eq!(decide(&limit(1000, 5), 3), Decision::Identify);
        assert_eq!(decide(&limit(4, 5), 3), Decision::Identify);
        assert_eq!(decide(&limit(3, 60_000), 3), Decision::Hold(Duration::from_secs(62)));
        assert_eq!(decide(&limit(0, 0), 3), Decision::Hold(AFTER_RESET));
    }

    #[test]
    fn with_no_reserve_the_last_identify_is_spent_but_never_one_more() {
        assert_eq!(decide(&limit(1, 10), 0), Decision::Identify);
        assert!(matches!(decide(&limit(0, 10), 0), Decision::Hold(_)));
    }

    #[test]
    fn times_are_rfc3339_in_whole_seconds() {
        let t = DateTime::parse_from_rfc3339("2026-12-01T20:00:00.750Z").unwrap().with_timezone(&Utc);
        let seen = Seen { remaining: Some(3), reset_at: Some(t), held_until: Some(t) };
        assert_eq!(seen.held_until().as_deref(), Some("2026-12-01T20:00:00Z"));
    }
}
