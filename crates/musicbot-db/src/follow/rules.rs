//! The record rules, written once for the operator's sync and bot-runner's fleet mode: how
//! a `MusicBotDB` document is read (fields, then its token decrypted and shape-checked), why
//! one is skipped, and which record wins when several name one application.

use crate::cipher::{self, Stored, TokenCipher};
use crate::{BotRecord, RecordError};
use futures::TryStreamExt as _;
use mongodb::Collection;
use mongodb::bson::{Bson, Document, doc};
use musicbot_api::token::{Token, TokenError};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Declares [`SkipReason`] from one list, so [`SkipReason::ALL`] (every label the metrics
/// start at 0) cannot miss a variant.
macro_rules! skip_reasons {
    ($($(#[$doc:meta])* $variant:ident => $label:literal,)+) => {
        /// Why a record is not synced: the `reason` label of the skipped-record metrics.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum SkipReason {
            $($(#[$doc])* $variant,)+
        }

        impl SkipReason {
            pub const ALL: &[Self] = &[$(Self::$variant,)+];

            pub fn as_str(self) -> &'static str {
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
    /// The operator's sync only: a Secret or MusicBot of the record's name exists and was
    /// not made by the sync.
    NameTaken => "name_taken",
}

/// Why a record is not synced. `Display` is what logs and Events say: field names and
/// reasons, never the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    Record(RecordError),
    /// The token does not decrypt (the error's text: no key, wrong key, unknown scheme).
    Token(String),
    /// The (decrypted) token is not a bot token, or belongs to another application.
    TokenShape(TokenError),
    /// Another record with the same client id is older and is the one run.
    Duplicate {
        client_id: String,
        kept: String,
    },
}

impl Problem {
    pub fn reason(&self) -> SkipReason {
        match self {
            Problem::Record(RecordError::Missing(_) | RecordError::EmptyToken) => SkipReason::MissingField,
            Problem::Record(RecordError::WrongType { .. }) => SkipReason::WrongType,
            Problem::Record(RecordError::BadClientId(_)) => SkipReason::BadClientId,
            Problem::Token(_) => SkipReason::UndecryptableToken,
            Problem::TokenShape(_) => SkipReason::MalformedToken,
            Problem::Duplicate { .. } => SkipReason::DuplicateClientId,
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
                write!(f, "clientId {client_id} is also in the older record {kept}, which is the one used")
            }
        }
    }
}

/// A record as the operator's sync and fleet mode read it.
#[derive(Clone, PartialEq, Eq)]
pub enum Parsed {
    Good(Box<Good>),
    Bad { client_id: Option<String>, problem: Problem },
}

/// A good record with its token decrypted (or plaintext from an older database).
#[derive(Clone, PartialEq, Eq)]
pub struct Good {
    pub record: BotRecord,
    pub token: Token,
    pub plaintext: bool,
}

impl Parsed {
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Parsed::Good(g) => Some(&g.record.client_id),
            Parsed::Bad { client_id, .. } => client_id.as_deref(),
        }
    }
}

/// The key of a record in the mirror: an ObjectId's hex, anything else as BSON prints it.
pub fn record_key(id: &Bson) -> String {
    match id {
        Bson::ObjectId(oid) => oid.to_hex(),
        other => other.to_string(),
    }
}

/// Reads one document: the record's fields, then its token (decrypted, shape-checked).
pub fn parse(doc: &Document, cipher: Option<&TokenCipher>) -> Parsed {
    let record = match BotRecord::from_document(doc) {
        Ok(r) => r,
        Err(e) => {
            let client_id =
                doc.get_str("clientId").ok().filter(|c| crate::records::is_snowflake(c)).map(str::to_string);
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
pub struct Mirror {
    records: BTreeMap<String, Parsed>,
    good_by_client: BTreeMap<String, BTreeSet<String>>,
}

impl Mirror {
    /// Reads the whole collection by the record rules.
    pub async fn read(records: &Collection<Document>, cipher: Option<&TokenCipher>) -> mongodb::error::Result<Self> {
        let docs: Vec<Document> = records.find(doc! {}).await?.try_collect().await?;
        Ok(Self::from_records(docs.iter().map(|d| {
            let key = d.get("_id").map(record_key).unwrap_or_else(|| "<no _id>".into());
            (key, parse(d, cipher))
        })))
    }

    /// Reads the record `id` again after a change and keeps it (or forgets it, once
    /// deleted); returns its key and what the mirror held before.
    pub async fn reread(
        &mut self,
        records: &Collection<Document>,
        id: &Bson,
        cipher: Option<&TokenCipher>,
    ) -> mongodb::error::Result<(String, Option<Parsed>)> {
        let found = records.find_one(doc! {"_id": id.clone()}).await?;
        let key = record_key(id);
        let old = self.set(key.clone(), found.as_ref().map(|d| parse(d, cipher)));
        Ok((key, old))
    }

    pub fn from_records(records: impl IntoIterator<Item = (String, Parsed)>) -> Self {
        let mut m = Self::default();
        for (k, p) in records {
            m.set(k, Some(p));
        }
        m
    }

    /// Sets (or with None removes) one record; returns what was there.
    pub fn set(&mut self, key: String, parsed: Option<Parsed>) -> Option<Parsed> {
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

    pub fn get(&self, key: &str) -> Option<&Parsed> {
        self.records.get(key)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The record used for a client id: the oldest good one (ObjectIds sort by creation).
    pub fn winner(&self, client_id: &str) -> Option<(&str, &Good)> {
        let key = self.good_by_client.get(client_id)?.first()?;
        match self.records.get(key) {
            Some(Parsed::Good(g)) => Some((key.as_str(), g)),
            _ => None,
        }
    }

    /// The record used for each client id, by client id.
    pub fn winners(&self) -> impl Iterator<Item = (&str, &Good)> {
        self.good_by_client.keys().filter_map(|c| self.winner(c))
    }

    pub fn clients(&self) -> impl Iterator<Item = &str> {
        self.good_by_client.keys().map(String::as_str)
    }

    /// Records kept out by their content: malformed ones and younger duplicates.
    pub fn problems(&self) -> Vec<(&str, Option<&str>, Problem)> {
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

    /// Records in use whose token is stored in plaintext.
    pub fn plaintext(&self) -> Vec<&str> {
        self.winners().filter(|(_, g)| g.plaintext).map(|(k, _)| k).collect()
    }
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
}
