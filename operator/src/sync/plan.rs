//! Pure: the sync's picture of the `MusicBotDB` collection (the mirror), the problems that
//! keep a record out of the cluster, and the step that brings one MusicBot in line.

use super::desired::{self, Desired, ObjectKind};
use mongodb::bson::{Bson, Document};
use musicbot_api::token::{Token, TokenError};
use musicbot_db::cipher::{self, Stored, TokenCipher};
use musicbot_db::{BotRecord, RecordError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Declares [`SkipReason`] from one list, so [`SkipReason::ALL`] (every label the metrics
/// start at 0) cannot miss a variant.
macro_rules! skip_reasons {
    ($($(#[$doc:meta])* $variant:ident => $label:literal,)+) => {
        /// Why a record is not synced: the `reason` label of the skipped-record metrics.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) enum SkipReason {
            $($(#[$doc])* $variant,)+
        }

        impl SkipReason {
            pub(crate) const ALL: &[Self] = &[$(Self::$variant,)+];

            pub(crate) fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }
        }
    };
}

skip_reasons! {
    /// A required field is missing or empty.
    MissingField => "missing_field",
    WrongType => "wrong_type",
    BadClientId => "bad_client_id",
    UndecryptableToken => "undecryptable_token",
    MalformedToken => "malformed_token",
    DuplicateClientId => "duplicate_client_id",
    NameTaken => "name_taken",
}

/// Why a record is not synced. `Display` is what logs and Events say: field names and
/// reasons, never the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Problem {
    Record(RecordError),
    /// The token does not decrypt (the error's text: no key, wrong key, unknown scheme).
    Token(String),
    /// The (decrypted) token is not a bot token, or belongs to another application.
    TokenShape(TokenError),
    /// Another record with the same client id is older and is the one synced.
    Duplicate {
        client_id: String,
        kept: String,
    },
    /// A Secret or MusicBot of that name exists and was not made by the sync.
    NameTaken {
        kind: ObjectKind,
        name: String,
    },
}

impl Problem {
    pub(crate) fn reason(&self) -> SkipReason {
        match self {
            Problem::Record(RecordError::Missing(_) | RecordError::EmptyToken) => SkipReason::MissingField,
            Problem::Record(RecordError::WrongType { .. }) => SkipReason::WrongType,
            Problem::Record(RecordError::BadClientId(_)) => SkipReason::BadClientId,
            Problem::Token(_) => SkipReason::UndecryptableToken,
            Problem::TokenShape(_) => SkipReason::MalformedToken,
            Problem::Duplicate { .. } => SkipReason::DuplicateClientId,
            Problem::NameTaken { .. } => SkipReason::NameTaken,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Record(e) => write!(f, "{e}"),
            Problem::Token(e) => write!(f, "field `token`: {e}"),
            Problem::TokenShape(e) => write!(f, "field `token`: {e}"),
            Problem::Duplicate { client_id, kept } => {
                write!(f, "clientId {client_id} is also in the older record {kept}, which is the one synced")
            }
            Problem::NameTaken { kind, name } => {
                write!(f, "a {kind} named {name} exists and was not made by the sync; it is left alone")
            }
        }
    }
}

/// A record as the sync reads it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    Good(Box<Good>),
    Bad { client_id: Option<String>, problem: Problem },
}

/// A good record with its token decrypted (or plaintext from an older database).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Good {
    pub(crate) record: BotRecord,
    token: Token,
    pub(crate) plaintext: bool,
}

impl Parsed {
    pub(crate) fn client_id(&self) -> Option<&str> {
        match self {
            Parsed::Good(g) => Some(&g.record.client_id),
            Parsed::Bad { client_id, .. } => client_id.as_deref(),
        }
    }
}

/// The key of a record in the mirror: an ObjectId's hex, anything else as BSON prints it.
pub(crate) fn record_key(id: &Bson) -> String {
    match id {
        Bson::ObjectId(oid) => oid.to_hex(),
        other => other.to_string(),
    }
}

/// Reads one document: the record's fields, then its token (decrypted, shape-checked).
pub(crate) fn parse(doc: &Document, cipher: Option<&TokenCipher>) -> Parsed {
    let record = match BotRecord::from_document(doc) {
        Ok(r) => r,
        Err(e) => {
            let client_id =
                doc.get_str("clientId").ok().filter(|c| musicbot_db::records::is_snowflake(c)).map(str::to_string);
            return Parsed::Bad { client_id, problem: Problem::Record(e) };
        }
    };
    let bad = |problem| Parsed::Bad { client_id: Some(record.client_id.clone()), problem };
    let (token, stored) = match cipher::reveal(cipher, &record.client_id, &record.token) {
        Ok(t) => t,
        Err(e) => return bad(Problem::Token(e.to_string())),
    };
    let token = match Token::parse_for(&token, &record.client_id) {
        Ok(t) => t,
        Err(e) => return bad(Problem::TokenShape(e)),
    };
    Parsed::Good(Box::new(Good { plaintext: stored == Stored::Plaintext, record, token }))
}

/// The collection as last read: every record by key, and the good ones by client id.
#[derive(Default)]
pub(crate) struct Mirror {
    records: BTreeMap<String, Parsed>,
    good_by_client: BTreeMap<String, BTreeSet<String>>,
}

impl Mirror {
    pub(crate) fn from_records(records: impl IntoIterator<Item = (String, Parsed)>) -> Self {
        let mut m = Self::default();
        for (k, p) in records {
            m.set(k, Some(p));
        }
        m
    }

    /// Sets (or with None removes) one record; returns what was there.
    pub(crate) fn set(&mut self, key: String, parsed: Option<Parsed>) -> Option<Parsed> {
        let old = self.records.remove(&key);
        if let Some(Parsed::Good(g)) = &old
            && let Some(keys) = self.good_by_client.get_mut(&g.record.client_id)
        {
            keys.remove(&key);
            if keys.is_empty() {
                self.good_by_client.remove(&g.record.client_id);
            }
        }
        if let Some(p) = parsed {
            if let Parsed::Good(g) = &p {
                self.good_by_client.entry(g.record.client_id.clone()).or_default().insert(key.clone());
            }
            self.records.insert(key, p);
        }
        old
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Parsed> {
        self.records.get(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// The record synced for a client id: the oldest good one (ObjectIds sort by creation).
    pub(crate) fn winner(&self, client_id: &str) -> Option<(&str, &Good)> {
        let key = self.good_by_client.get(client_id)?.first()?;
        match self.records.get(key) {
            Some(Parsed::Good(g)) => Some((key.as_str(), g)),
            _ => None,
        }
    }

    pub(crate) fn clients(&self) -> impl Iterator<Item = &str> {
        self.good_by_client.keys().map(String::as_str)
    }

    /// Records kept out of the cluster by their content: malformed ones and younger duplicates.
    pub(crate) fn problems(&self) -> Vec<(&str, Option<&str>, Problem)> {
        let mut out = Vec::new();
        for (key, parsed) in &self.records {
            match parsed {
                Parsed::Bad { client_id, problem } => out.push((key.as_str(), client_id.as_deref(), problem.clone())),
                Parsed::Good(g) => {
                    let client = g.record.client_id.as_str();
                    if let Some((kept, _)) = self.winner(client)
                        && kept != key
                    {
                        let problem = Problem::Duplicate { client_id: client.into(), kept: kept.into() };
                        out.push((key.as_str(), Some(client), problem));
                    }
                }
            }
        }
        out
    }

    /// Synced records whose token is stored in plaintext.
    pub(crate) fn plaintext(&self) -> Vec<&str> {
        self.good_by_client.keys().filter_map(|c| self.winner(c)).filter(|(_, g)| g.plaintext).map(|(k, _)| k).collect()
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

/// Whether deleting `deleting` synced MusicBots out of `fleet` is a mass deletion, held until
/// an override: more than `max_percent` of the fleet, or all of it. One bot at a time always
/// goes, or removing the last record of a one-bot fleet would need the override too.
pub(crate) fn is_mass_deletion(deleting: usize, fleet: usize, max_percent: u8) -> bool {
    deleting > 1 && (deleting >= fleet || deleting * 100 > fleet * usize::from(max_percent))
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

    fn key_cipher() -> TokenCipher {
        TokenCipher::from_key_material(&[7u8; 32]).unwrap()
    }

    #[test]
    fn parse_decrypts_checks_the_token_and_names_problems() {
        let c = key_cipher();
        let enc = c.encrypt(A, &token(A, "x"));
        let p = parse(&doc! {"_id": oid(1), "clientId": A, "token": enc.clone()}, Some(&c));
        assert!(matches!(&p, Parsed::Good(g) if !g.plaintext && g.token.expose() == token(A, "x")));
        let p = parse(&doc! {"_id": oid(1), "clientId": A, "token": token(A, "x")}, Some(&c));
        assert!(matches!(&p, Parsed::Good(g) if g.plaintext), "plaintext still works");

        let reason = |d: Document, c: Option<&TokenCipher>| match parse(&d, c) {
            Parsed::Bad { problem, .. } => Some(problem.reason()),
            Parsed::Good(_) => None,
        };
        use SkipReason::*;
        assert_eq!(reason(doc! {"_id": oid(1), "clientId": A, "token": enc.clone()}, None), Some(UndecryptableToken));
        assert_eq!(reason(doc! {"_id": oid(1), "clientId": B, "token": enc}, Some(&c)), Some(UndecryptableToken));
        assert_eq!(reason(doc! {"_id": oid(1), "clientId": A, "token": "nope"}, None), Some(MalformedToken));
        assert_eq!(reason(doc! {"_id": oid(1), "clientId": A, "token": token(B, "x")}, None), Some(MalformedToken));
        assert_eq!(reason(doc! {"_id": oid(1), "token": "t"}, None), Some(MissingField));
        assert_eq!(reason(doc! {"_id": oid(1), "clientId": A, "token": " "}, None), Some(MissingField));
        assert_eq!(reason(doc! {"_id": oid(1), "clientId": 5, "token": "t"}, None), Some(WrongType));
        assert_eq!(reason(doc! {"_id": "text", "clientId": A, "token": "t"}, None), Some(WrongType));
        assert_eq!(reason(doc! {"_id": oid(1), "clientId": "12ab", "token": "t"}, None), Some(BadClientId));
        // A problem never shows the token.
        let secret = token(A, "very-secret-tail");
        if let Parsed::Bad { problem, client_id } = parse(&doc! {"_id": oid(1), "clientId": B, "token": secret}, None) {
            assert!(!problem.to_string().contains("very-secret-tail"));
            assert_eq!(client_id.as_deref(), Some(B));
        } else {
            panic!("a token of another application must not parse");
        }
        // `enc:` before a plaintext token: it does not decrypt, and is not quoted either.
        let prefixed = format!("enc:{}", token(A, "very-secret-tail"));
        for c in [None, Some(&c)] {
            let Parsed::Bad { problem, .. } = parse(&doc! {"_id": oid(1), "clientId": A, "token": &prefixed}, c) else {
                panic!("an `enc:` value that is no ciphertext must not parse")
            };
            assert!(!problem.to_string().contains("very-secret-tail"), "{problem}");
        }
    }

    #[test]
    fn the_oldest_record_of_a_client_id_wins_and_the_others_are_problems() {
        let mut m = Mirror::from_records([good(2, A, "new"), good(1, A, "old"), good(3, B, "b")]);
        assert_eq!(m.winner(A).unwrap().0, oid(1).to_hex());
        let problems = m.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, oid(2).to_hex());
        assert_eq!(problems[0].2.reason(), SkipReason::DuplicateClientId);
        // The older one goes: the younger takes over.
        m.set(oid(1).to_hex(), None);
        assert_eq!(m.winner(A).unwrap().0, oid(2).to_hex());
        assert!(m.problems().is_empty());
        assert_eq!(m.clients().collect::<Vec<_>>(), [A, B]);
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
