//! What the bot says, in the language of whoever it says it to. The catalogs are
//! `bot-runner/locales/<language>.toml` (rust-i18n, compiled in); English is the fallback.
//! A reply is built as a [`Say`] (a catalog key and its arguments) where it is decided, and
//! put into words where the language is known: the caller's Discord client, else the
//! server's preferred locale, else English; a server's `/settings language` overrides both.
//! Command names, descriptions, options and choices are registered with Discord's
//! localizations from the same catalogs (`commands.*`).

use std::borrow::Cow;
use std::fmt::Display;

/// The catalogs there are, by language: what a Discord locale (`th`, `en-US`) maps to.
pub const LANGUAGES: [&str; 2] = ["en", "th"];
/// The Discord locales each catalog is registered under, besides the default (English).
const DISCORD_LOCALES: [(&str, &str); 1] = [("th", "th")];

/// A sentence for a user, before it is put into their language.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Say {
    key: &'static str,
    args: Vec<(&'static str, String)>,
}

impl Say {
    pub fn new(key: &'static str) -> Self {
        Self { key, args: Vec::new() }
    }

    /// Fills `%{name}` in the sentence.
    pub fn with(mut self, name: &'static str, value: impl Display) -> Self {
        self.args.push((name, value.to_string()));
        self
    }

    /// The sentence in `language` (a catalog of [`LANGUAGES`]; English if it has no such
    /// key). Arguments that are themselves sentences are put in first.
    pub fn in_language(&self, language: &str) -> String {
        let template = rust_i18n::t!(self.key, locale = language);
        let (names, values): (Vec<&str>, Vec<String>) = self.args.iter().map(|(n, v)| (*n, v.clone())).unzip();
        rust_i18n::replace_patterns(&template, &names, &values)
    }
}

/// The catalog for a Discord locale, if there is one (`en-GB` and `en-US` are English).
pub fn catalog_for(locale: &str) -> Option<&'static str> {
    let language = locale.split('-').next().unwrap_or_default();
    LANGUAGES.into_iter().find(|l| *l == language)
}

/// Which catalog to answer in: the server's override, the caller's client, the server's
/// preferred locale, English.
pub fn language(overridden: Option<&str>, caller: Option<&str>, server: Option<&str>) -> &'static str {
    [overridden, caller, server].into_iter().flatten().find_map(catalog_for).unwrap_or("en")
}

/// Names, descriptions, option names and choices of `commands` (and their subcommands) from
/// the catalogs: English as the default, the other catalogs as Discord localizations.
pub fn localize<U, E>(commands: &mut [poise::Command<U, E>]) {
    for c in commands {
        let name = c.name.clone();
        localize_command(c, &name);
    }
}

fn localize_command<U, E>(c: &mut poise::Command<U, E>, path: &str) {
    let key = |k: &str| format!("commands.{path}.{k}");
    if let Some(d) = english(&key("description")) {
        c.description = Some(d.into());
    }
    c.name_localizations = localized(&key("name"));
    c.description_localizations = localized(&key("description"));
    for p in c.parameters.iter_mut() {
        let key = |k: &str| format!("commands.{path}.options.{}.{k}", p.name);
        if let Some(d) = english(&key("description")) {
            p.description = Some(d.into());
        }
        p.name_localizations = localized(&key("name"));
        p.description_localizations = localized(&key("description"));
        let choices: Vec<poise::CommandParameterChoice> = p
            .choices
            .iter()
            .enumerate()
            .map(|(i, choice)| {
                let mut choice = choice.clone();
                choice.localizations = localized(&key(&format!("choices.{i}")));
                choice
            })
            .collect();
        p.choices = Cow::Owned(choices);
    }
    for sub in c.subcommands.iter_mut() {
        let sub_path = format!("{path}.{}", sub.name);
        localize_command(sub, &sub_path);
    }
}

/// A catalog entry in English, if the catalog has it.
fn english(key: &str) -> Option<String> {
    let text = rust_i18n::t!(key, locale = "en");
    (text != key).then(|| text.into_owned())
}

type Localizations = Cow<'static, [(Cow<'static, str>, Cow<'static, str>)]>;

/// The entry in each other catalog that has it, keyed by Discord locale.
fn localized(key: &str) -> Localizations {
    let found = DISCORD_LOCALES.iter().filter_map(|(language, locale)| {
        let text = rust_i18n::t!(key, locale = *language);
        // rust-i18n falls back to English, then to the key: neither is a translation.
        let fallback = english(key);
        (text != key && Some(text.as_ref()) != fallback.as_deref())
            .then(|| (Cow::Borrowed(*locale), Cow::Owned(text.into_owned())))
    });
    Cow::Owned(found.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_server_override_then_the_caller_then_the_server_then_english() {
        assert_eq!(language(None, Some("th"), Some("en-US")), "th");
        assert_eq!(language(None, Some("en-GB"), Some("th")), "en");
        assert_eq!(language(None, Some("fr"), Some("th")), "th", "no French catalog: the server's");
        assert_eq!(language(None, Some("fr"), Some("de")), "en");
        assert_eq!(language(Some("th"), Some("en-US"), None), "th");
        assert_eq!(language(None, None, None), "en");
    }

    #[test]
    fn a_sentence_is_put_into_the_language_asked_for() {
        let say = Say::new("queue.removed").with("title", "Song");
        assert_eq!(say.in_language("en"), "Removed **Song**.");
        assert_ne!(say.in_language("th"), say.in_language("en"));
        assert!(say.in_language("th").contains("**Song**"));
        assert_eq!(say.in_language("fr"), "Removed **Song**.", "no catalog: English");
    }

    /// Every key of a catalog, flattened (`a.b.c`), with the `%{...}` names its text uses.
    fn catalog(language: &str) -> std::collections::BTreeMap<String, BTreeSet<String>> {
        fn walk(prefix: &str, v: &toml::Value, out: &mut std::collections::BTreeMap<String, BTreeSet<String>>) {
            match v {
                toml::Value::Table(t) => {
                    for (k, v) in t {
                        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                        walk(&key, v, out);
                    }
                }
                toml::Value::String(s) => {
                    let names = s.split("%{").skip(1).filter_map(|p| p.split_once('}')).map(|(n, _)| n.to_string());
                    out.insert(prefix.to_string(), names.collect());
                }
                other => panic!("{prefix}: not text: {other:?}"),
            }
        }
        let path = format!("{}/locales/{language}.toml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = std::collections::BTreeMap::new();
        walk("", &text.parse::<toml::Table>().map(toml::Value::Table).unwrap(), &mut out);
        out
    }

    #[test]
    fn every_catalog_has_every_key_with_the_same_arguments() {
        let english = catalog("en");
        assert!(english.len() > 100, "{} keys", english.len());
        for language in LANGUAGES {
            let other = catalog(language);
            let missing: Vec<&String> = english.keys().filter(|k| !other.contains_key(*k)).collect();
            let extra: Vec<&String> = other.keys().filter(|k| !english.contains_key(*k)).collect();
            assert!(missing.is_empty() && extra.is_empty(), "{language}: missing {missing:?}, extra {extra:?}");
            for (key, names) in &english {
                assert_eq!(&other[key], names, "{language}: {key} fills other arguments");
            }
        }
    }

    /// Every key the code names is in the English catalog (a typo would reach a user as the
    /// key itself).
    #[test]
    fn every_key_the_code_uses_is_in_the_catalog() {
        let english = catalog("en");
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut used = BTreeSet::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for part in text.split("Say::new(\"").skip(1) {
                    used.insert(part.split('"').next().unwrap().to_string());
                }
            }
        }
        assert!(used.len() > 80, "the scan finds the code's keys: {used:?}");
        let unknown: Vec<&String> = used.iter().filter(|k| !english.contains_key(*k)).collect();
        assert!(unknown.is_empty(), "not in locales/en.toml: {unknown:?}");
    }

    #[test]
    fn commands_are_registered_with_thai_names_and_descriptions() {
        let defs = crate::commands::definitions();
        let json: Vec<serde_json::Value> = defs.iter().map(|c| serde_json::to_value(c).unwrap()).collect();
        for c in &json {
            let name = c["name"].as_str().unwrap();
            assert!(c["name_localizations"]["th"].is_string(), "/{name} has no Thai name: {c}");
            assert!(c["description_localizations"]["th"].is_string(), "/{name} has no Thai description");
            for o in c["options"].as_array().into_iter().flatten() {
                assert!(o["name_localizations"]["th"].is_string(), "/{name} {}: no Thai name", o["name"]);
                for choice in o["choices"].as_array().into_iter().flatten() {
                    assert!(choice["name_localizations"]["th"].is_string(), "/{name}: {choice}");
                }
            }
        }
    }
}
