//! Pure: the step that brings one MusicBot in line with the mirror of the `MusicBotDB`
//! collection (the record rules and the mirror are musicbot-db's, shared with fleet mode),
//! and the problems that keep a record out of the cluster.

use super::desired::{self, Desired, ObjectKind};
use musicbot_db::follow::rules::{Mirror, Parsed, Problem as RecordProblem, SkipReason};
use std::collections::BTreeSet;
use std::fmt;

/// Why a record is not synced: what the record rules say of its content, or that its
/// objects' name is taken. `Display` is what logs and Events say, never the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    Content(RecordProblem),
    /// A Secret or MusicBot of that name exists and was not made by the sync.
    NameTaken {
        kind: ObjectKind,
        name: String,
    },
}

impl Problem {
    pub(crate) fn reason(&self) -> SkipReason {
        match self {
            Problem::Content(p) => p.reason(),
            Problem::NameTaken { .. } => SkipReason::NameTaken,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Content(p) => write!(f, "{p}"),
            Problem::NameTaken { kind, name } => {
                write!(f, "a {kind} named {name} exists and was not made by the sync; it is left alone")
            }
        }
    }
}

/// What the cluster holds for one synced MusicBot, as far as the sync is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) record_key: String,
    pub(crate) hash: String,
    /// The `sync-error` annotation.
    pub(crate) invalid: Option<String>,
    /// Whether its token Secret exists.
    pub(crate) secret: bool,
    /// Its `spec.suspended`: a deactivated record's bot runs no pod.
    pub(crate) suspended: bool,
}

/// One thing to do for one MusicBot name.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Apply(Box<Desired>),
    /// The record turned invalid: keep the last good objects running, say why.
    MarkInvalid(String),
    Delete,
}

impl Step {
    /// The `op` label of the write metrics and logs.
    pub(crate) fn op(&self) -> &'static str {
        match self {
            Step::Apply(_) => "apply",
            Step::MarkInvalid(_) => "mark_invalid",
            Step::Delete => "delete",
        }
    }
}

/// The step that brings the MusicBot `name` in line with the mirror, if any.
pub(crate) fn decide(mirror: &Mirror, collection: &str, name: &str, applied: Option<&Applied>) -> Option<Step> {
    if let Some((key, good)) = mirror.winner(desired::client_of(name)) {
        let want = Desired::new(collection, key, &good.record, good.token.expose());
        let current = applied.is_some_and(|a| a.hash == want.hash && a.secret && a.invalid.is_none());
        return (!current).then(|| Step::Apply(Box::new(want)));
    }
    let applied = applied?;
    match mirror.get(&applied.record_key) {
        Some(Parsed::Bad { problem, .. }) => {
            let why = problem.to_string();
            (applied.invalid.as_deref() != Some(&why)).then_some(Step::MarkInvalid(why))
        }
        // The record is gone, or now names another application.
        _ => Some(Step::Delete),
    }
}

/// MusicBot names a change of record `key` may affect: its old and new client ids, and any
/// MusicBot that came from it.
pub(crate) fn affected<'a>(
    key: &str,
    old: Option<&Parsed>,
    new: Option<&Parsed>,
    applied: impl Iterator<Item = (&'a String, &'a Applied)>,
) -> BTreeSet<String> {
    let mut names: BTreeSet<String> =
        [old, new].into_iter().flatten().filter_map(Parsed::client_id).map(desired::bot_name).collect();
    names.extend(applied.filter(|(_, a)| a.record_key == key).map(|(n, _)| n.clone()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use mongodb::bson::{doc, oid::ObjectId};
    use musicbot_db::follow::rules::parse;
    use std::collections::BTreeMap;

    const A: &str = "123456789012345678";
    const B: &str = "223456789012345678";

    fn token(client: &str, tail: &str) -> String {
        format!("{}.Gx1y2z.{tail}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(client))
    }

    fn oid(n: u8) -> ObjectId {
        let mut b = [0u8; 12];
        b[0] = 0x65;
        b[11] = n;
        ObjectId::from_bytes(b)
    }

    fn good(n: u8, client: &str, tail: &str) -> (String, Parsed) {
        let d = doc! {"_id": oid(n), "name": format!("bot {n}"), "clientId": client, "token": token(client, tail)};
        (oid(n).to_hex(), parse(&d, None))
    }

    #[test]
    fn decide_applies_changes_only() {
        let m = Mirror::from_records([good(1, A, "t")]);
        let name = desired::bot_name(A);
        let Some(Step::Apply(d)) = decide(&m, "MusicBotDB", &name, None) else { panic!("a new record is applied") };
        let applied = Applied {
            record_key: oid(1).to_hex(),
            hash: d.hash.clone(),
            invalid: None,
            secret: true,
            suspended: false,
        };
        assert_eq!(decide(&m, "MusicBotDB", &name, Some(&applied)), None, "unchanged: no write");
        let no_secret = Applied { secret: false, ..applied.clone() };
        assert!(
            matches!(decide(&m, "MusicBotDB", &name, Some(&no_secret)), Some(Step::Apply(_))),
            "Secret deleted by hand"
        );
        let stale = Applied { hash: "old".into(), ..applied.clone() };
        assert!(matches!(decide(&m, "MusicBotDB", &name, Some(&stale)), Some(Step::Apply(_))));
        // Gone from the database: delete. Never seen and not there: nothing.
        let empty = Mirror::default();
        assert_eq!(decide(&empty, "MusicBotDB", &name, Some(&applied)), Some(Step::Delete));
        assert_eq!(decide(&empty, "MusicBotDB", &name, None), None);
    }

    #[test]
    fn an_invalid_edit_keeps_the_last_good_version_running() {
        let name = desired::bot_name(A);
        let applied =
            Applied { record_key: oid(1).to_hex(), hash: "h".into(), invalid: None, secret: true, suspended: false };
        let bad = parse(&doc! {"_id": oid(1), "clientId": A, "token": "t", "isActive": "no"}, None);
        let m = Mirror::from_records([(oid(1).to_hex(), bad)]);
        let Some(Step::MarkInvalid(why)) = decide(&m, "MusicBotDB", &name, Some(&applied)) else {
            panic!("an invalid record marks its MusicBot")
        };
        assert!(why.contains("isActive"), "{why}");
        let marked = Applied { invalid: Some(why), ..applied };
        assert_eq!(decide(&m, "MusicBotDB", &name, Some(&marked)), None, "marked once");
    }

    #[test]
    fn a_changed_client_id_moves_the_musicbot() {
        let (key, old) = good(1, A, "t");
        let (_, new) = good(1, B, "t");
        let applied = BTreeMap::from([(
            desired::bot_name(A),
            Applied { record_key: key.clone(), hash: "h".into(), invalid: None, secret: true, suspended: false },
        )]);
        let names = affected(&key, Some(&old), Some(&new), applied.iter());
        assert_eq!(names, BTreeSet::from([desired::bot_name(A), desired::bot_name(B)]));
        let m = Mirror::from_records([(key, new)]);
        assert_eq!(decide(&m, "C", &desired::bot_name(A), applied.get(&desired::bot_name(A))), Some(Step::Delete));
        assert!(matches!(decide(&m, "C", &desired::bot_name(B), None), Some(Step::Apply(_))));
    }
}
