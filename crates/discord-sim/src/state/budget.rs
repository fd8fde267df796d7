//! Discord's session start limit: 1,000 IDENTIFYs per token per 24 hours (RESUMEs are
//! free). `GET /gateway/bot` reports what is left; an IDENTIFY with nothing left makes
//! Discord end every session of the bot and reset its token, so every later connection
//! (and REST call) with the old token fails as unauthenticated.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Discord's daily budget and its period.
pub const TOTAL: u32 = 1_000;
pub const PERIOD: Duration = Duration::from_secs(24 * 60 * 60);

/// One token's budget.
#[derive(Clone, Debug)]
pub(crate) struct IdentifyBudget {
    pub total: u32,
    pub remaining: u32,
    pub resets_at: Instant,
    pub max_concurrency: u32,
}

impl IdentifyBudget {
    /// A budget with `remaining` left that refills `reset_after` from now.
    pub fn new(remaining: u32, reset_after: Duration) -> Self {
        Self {
            total: TOTAL,
            remaining: remaining.min(TOTAL),
            resets_at: Instant::now() + reset_after,
            max_concurrency: 1,
        }
    }

    /// Refills the budget once its period has passed.
    fn refresh(&mut self, now: Instant) {
        if now >= self.resets_at {
            self.remaining = self.total;
            self.resets_at = now + PERIOD;
        }
    }

    /// Spends one IDENTIFY; false when none is left (Discord then resets the token).
    pub fn spend(&mut self, now: Instant) -> bool {
        self.refresh(now);
        if self.remaining == 0 {
            return false;
        }
        self.remaining -= 1;
        true
    }

    /// `session_start_limit` as `GET /gateway/bot` answers it (`reset_after` in ms).
    pub fn report(&mut self, now: Instant) -> Value {
        self.refresh(now);
        let reset_after = self.resets_at.saturating_duration_since(now).as_millis() as u64;
        json!({
            "total": self.total,
            "remaining": self.remaining,
            "reset_after": reset_after,
            "max_concurrency": self.max_concurrency,
        })
    }
}

impl Default for IdentifyBudget {
    fn default() -> Self {
        Self::new(TOTAL, PERIOD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_are_spent_until_none_is_left_and_the_period_refills_them() {
        let now = Instant::now();
        let mut b = IdentifyBudget::new(2, Duration::from_secs(60));
        assert_eq!(b.report(now)["remaining"], 2);
        assert!(b.spend(now));
        assert!(b.spend(now));
        assert!(!b.spend(now), "the third IDENTIFY is over the budget");
        let r = b.report(now + Duration::from_secs(30));
        assert_eq!((r["remaining"].as_u64(), r["total"].as_u64()), (Some(0), Some(1000)));
        let left = r["reset_after"].as_u64().unwrap();
        assert!((29_000..=30_000).contains(&left), "{left}");
        // After the reset: the whole budget, for another day.
        let later = now + Duration::from_secs(61);
        assert!(b.spend(later));
        let r = b.report(later);
        assert_eq!(r["remaining"], 999);
        assert!(r["reset_after"].as_u64().unwrap() > 86_000_000, "{r}");
    }
}
