//! The mass-deletion guard: an emptied or renamed collection (or a script that deactivates
//! every record) must not stop the whole fleet. Removals past a share of the fleet are held
//! until an override, in the operator's sync and in fleet mode alike.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Removals this recent count towards a mass deletion, so a burst of change-stream deletes
/// is held like one resync that deletes as many.
pub const DELETION_WINDOW: Duration = Duration::from_secs(60);

/// A removal waits until no new one was proposed for this long, and then all of them are
/// decided together: a `deleteMany` arrives as one change per record, and deciding each as
/// it comes would let the first ones of the burst go before the share is reached.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Whether removing `deleting` bots out of `fleet` is a mass deletion, held until an
/// override: more than `max_percent` of the fleet, or all of it. One bot at a time always
/// goes, or removing the last record of a one-bot fleet would need the override too.
pub fn is_mass_deletion(deleting: usize, fleet: usize, max_percent: u8) -> bool {
    deleting > 1 && (deleting >= fleet || deleting * 100 > fleet * usize::from(max_percent))
}

/// How a bot would leave: its record deleted, or deactivated (which stops it as surely).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    Delete,
    Deactivate,
}

/// What [`DeletionGuard::check`] decided.
#[derive(Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The names whose removal is held (empty: every removal goes).
    pub held: BTreeSet<String>,
    /// The names whose removal waits for the burst to settle: leave them be for now, and
    /// check again once [`DeletionGuard::settling`] says so.
    pub waiting: BTreeSet<String>,
    /// Whether `held` differs from the last verdict: worth a log line and an Event.
    pub changed: bool,
    /// Removals counted (proposed now plus recent), and the fleet they are counted against.
    pub removing: usize,
    pub fleet: usize,
}

/// Remembers recent removals and what is held. Names are the caller's (MusicBot names in the
/// sync, client ids in fleet mode); held names should be proposed again on each check, so a
/// held removal counts towards any new one.
#[derive(Debug)]
pub struct DeletionGuard {
    max_percent: u8,
    allow: bool,
    /// Removals let through within [`DELETION_WINDOW`]: when, and how. By name, so a bot
    /// deactivated and then deleted counts once.
    recent: HashMap<String, (Instant, Removal)>,
    held: BTreeSet<String>,
    /// When the newest removal now waiting was first proposed.
    last_proposed: Option<Instant>,
    waiting: BTreeSet<String>,
    settle: Duration,
}

impl DeletionGuard {
    /// `allow`: the override, every removal goes.
    pub fn new(max_percent: u8, allow: bool) -> Self {
        Self {
            max_percent: max_percent.min(100),
            allow,
            recent: HashMap::new(),
            held: BTreeSet::new(),
            last_proposed: None,
            waiting: BTreeSet::new(),
            settle: SETTLE,
        }
    }

    /// With another settling time than [`SETTLE`] (zero: every check decides at once).
    pub fn settling_for(self, settle: Duration) -> Self {
        Self { settle, ..self }
    }

    pub fn max_percent(&self) -> u8 {
        self.max_percent
    }

    pub fn held(&self) -> &BTreeSet<String> {
        &self.held
    }

    /// Removals waiting for the burst to settle (propose them again on the next check).
    pub fn waiting(&self) -> &BTreeSet<String> {
        &self.waiting
    }

    /// Whether removals wait and the burst has settled, so a check now decides them.
    pub fn settled(&self) -> bool {
        !self.waiting.is_empty() && self.last_proposed.is_none_or(|t| t.elapsed() >= self.settle)
    }

    /// Decides on the removals `proposed` out of a fleet of `present` bots now (the bots
    /// removed within the window and no longer `is_present` are added back to it, so the
    /// share is of the fleet as it was). Removals let through are remembered.
    pub fn check(
        &mut self,
        proposed: &BTreeMap<String, Removal>,
        present: usize,
        is_present: impl Fn(&str) -> bool,
    ) -> Verdict {
        self.recent.retain(|_, (t, _)| t.elapsed() <= DELETION_WINDOW);
        // Held removals are decided at once (they count already); new ones wait for the burst.
        let new: Vec<&String> =
            proposed.keys().filter(|n| !self.waiting.contains(*n) && !self.held.contains(*n)).collect();
        if !new.is_empty() {
            self.last_proposed = Some(Instant::now());
        }
        self.waiting = proposed.keys().filter(|n| !self.held.contains(*n)).cloned().collect();
        if !self.allow && !self.waiting.is_empty() && self.last_proposed.is_some_and(|t| t.elapsed() < self.settle) {
            let held = self.held.iter().filter(|n| proposed.contains_key(*n)).cloned().collect::<BTreeSet<_>>();
            let changed = held != self.held;
            self.held = held.clone();
            return Verdict { held, waiting: self.waiting.clone(), changed, removing: 0, fleet: present };
        }
        self.waiting.clear();
        self.last_proposed = None;
        let recent = self.recent.keys().filter(|n| !proposed.contains_key(*n)).count();
        // A deactivated MusicBot is still there (suspended); a deactivated fleet bot is not.
        let gone = self.recent.keys().filter(|n| !is_present(n)).count();
        let (removing, fleet) = (recent + proposed.len(), present + gone);
        let hold = !proposed.is_empty() && !self.allow && is_mass_deletion(removing, fleet, self.max_percent);
        let held: BTreeSet<String> = if hold { proposed.keys().cloned().collect() } else { BTreeSet::new() };
        if !hold {
            // Counted when tried: one that then fails still counts, erring on holding.
            for (name, how) in proposed {
                self.recent.insert(name.clone(), (Instant::now(), *how));
            }
        }
        let changed = held != self.held;
        self.held = held.clone();
        Verdict { held, waiting: BTreeSet::new(), changed, removing, fleet }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_share_of_the_fleet_is_a_mass_deletion() {
        assert!(!is_mass_deletion(0, 10, 50));
        assert!(!is_mass_deletion(1, 10, 50), "a small deletion goes");
        assert!(!is_mass_deletion(5, 10, 50), "exactly the share goes");
        assert!(is_mass_deletion(6, 10, 50));
        assert!(is_mass_deletion(10, 10, 100), "all of them is held whatever the share");
        assert!(is_mass_deletion(2, 2, 50));
        assert!(!is_mass_deletion(1, 1, 50), "the one bot of a fleet of one goes");
        assert!(is_mass_deletion(2, 100, 0), "0 %: anything but one at a time is held");
    }

    fn proposing(names: &[&str], how: Removal) -> BTreeMap<String, Removal> {
        names.iter().map(|n| (n.to_string(), how)).collect()
    }

    #[test]
    fn deletions_one_by_one_add_up_within_the_window() {
        let mut g = DeletionGuard::new(50, false).settling_for(Duration::ZERO);
        let mut present: BTreeSet<String> = (0..4).map(|i| format!("b{i}")).collect();
        // b0 goes (1 of 4), then b1 (2 of 4, exactly half): both pass.
        for name in ["b0", "b1"] {
            let v = g.check(&proposing(&[name], Removal::Delete), present.len(), |n| present.contains(n));
            assert!(v.held.is_empty(), "{name}: {v:?}");
            present.remove(name);
        }
        // b2 would make 3 of the 4 there were: held, and said once.
        let v = g.check(&proposing(&["b2"], Removal::Delete), present.len(), |n| present.contains(n));
        assert_eq!((v.held.len(), v.changed, v.removing, v.fleet), (1, true, 3, 4), "{v:?}");
        let v = g.check(&proposing(&["b2"], Removal::Delete), present.len(), |n| present.contains(n));
        assert!(!v.changed && v.held.len() == 1, "{v:?}");
        // The record comes back: nothing proposed, nothing held, and that is a change.
        let v = g.check(&BTreeMap::new(), present.len(), |n| present.contains(n));
        assert!(v.held.is_empty() && v.changed, "{v:?}");
    }

    #[test]
    fn deactivating_everyone_is_held_and_the_override_lets_it_go() {
        let all = proposing(&["a", "b", "c"], Removal::Deactivate);
        let v = DeletionGuard::new(50, false).settling_for(Duration::ZERO).check(&all, 3, |_| true);
        assert_eq!(v.held.len(), 3, "{v:?}");
        let v = DeletionGuard::new(50, true).check(&all, 3, |_| true);
        assert!(v.held.is_empty() && v.waiting.is_empty(), "the override does not wait either: {v:?}");
    }

    #[test]
    fn a_burst_of_single_deletions_waits_and_is_decided_as_one() {
        let settle = Duration::from_millis(200);
        let mut g = DeletionGuard::new(50, false).settling_for(settle);
        let present: BTreeSet<String> = (0..4).map(|i| format!("b{i}")).collect();
        let mut proposed = BTreeMap::new();
        // Three deletions arrive one change at a time: each waits, none goes.
        for name in ["b0", "b1", "b2"] {
            proposed.insert(name.to_string(), Removal::Delete);
            let v = g.check(&proposed, present.len(), |n| present.contains(n));
            assert!(v.held.is_empty() && v.waiting.len() == proposed.len(), "{name}: {v:?}");
            assert!(!g.settled());
        }
        std::thread::sleep(settle);
        assert!(g.settled());
        // Settled: 3 of 4 at once is a mass deletion, all three held.
        let v = g.check(&proposed, present.len(), |n| present.contains(n));
        assert_eq!((v.held.len(), v.waiting.len(), v.changed), (3, 0, true), "{v:?}");
        // Held ones are decided at once from then on (no new wait).
        let v = g.check(&proposed, present.len(), |n| present.contains(n));
        assert_eq!((v.held.len(), v.waiting.len(), v.changed), (3, 0, false), "{v:?}");
        // One alone, after settling, goes.
        let mut g = DeletionGuard::new(50, false).settling_for(settle);
        let one = proposing(&["b0"], Removal::Delete);
        assert_eq!(g.check(&one, 4, |_| true).waiting.len(), 1);
        std::thread::sleep(settle);
        let v = g.check(&one, 4, |_| true);
        assert!(v.held.is_empty() && v.waiting.is_empty(), "{v:?}");
    }
}
