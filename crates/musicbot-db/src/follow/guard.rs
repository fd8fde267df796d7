//! The mass-deletion guard: an emptied or renamed collection (or a script that deactivates
//! every record) must not stop the whole fleet. Removals past a share of the fleet are held
//! until an override, in the operator's sync and in fleet mode alike.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Removals this recent count towards a mass deletion, so a burst of change-stream deletes
/// is held like one resync that deletes as many.
pub const DELETION_WINDOW: Duration = Duration::from_secs(60);

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
}

impl DeletionGuard {
    /// `allow`: the override, every removal goes.
    pub fn new(max_percent: u8, allow: bool) -> Self {
        Self { max_percent: max_percent.min(100), allow, recent: HashMap::new(), held: BTreeSet::new() }
    }

    pub fn max_percent(&self) -> u8 {
        self.max_percent
    }

    pub fn held(&self) -> &BTreeSet<String> {
        &self.held
    }

    /// Decides on the removals `proposed` out of a fleet of `present` bots now (the bots
    /// deleted within the window and no longer in `is_present` are added back to it, so the
    /// share is of the fleet as it was). Removals let through are remembered.
    pub fn check(
        &mut self,
        proposed: &BTreeMap<String, Removal>,
        present: usize,
        is_present: impl Fn(&str) -> bool,
    ) -> Verdict {
        self.recent.retain(|_, (t, _)| t.elapsed() <= DELETION_WINDOW);
        let recent = self.recent.keys().filter(|n| !proposed.contains_key(*n)).count();
        let gone = self.recent.iter().filter(|(n, (_, how))| *how == Removal::Delete && !is_present(n)).count();
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
        Verdict { held, changed, removing, fleet }
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
        let mut g = DeletionGuard::new(50, false);
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
        let v = DeletionGuard::new(50, false).check(&all, 3, |_| true);
        assert_eq!(v.held.len(), 3, "{v:?}");
        let v = DeletionGuard::new(50, true).check(&all, 3, |_| true);
        assert!(v.held.is_empty(), "{v:?}");
    }
}
