//! Which images a bot pod may run: the repository of `--bot-image` and those of
//! `--bot-image-repositories`, so a MusicBot editor cannot run a miner through
//! `spec.pod.image`. The chart's admission policy holds the operator to the same list.

use super::BotDefaults;
use musicbot_api::crd::MusicBot;

/// A bot whose image is not from an allowed repository. The text goes into its Ready
/// condition and a Warning Event, so an editor learns what to choose instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image {image:?} is not from an allowed repository (allowed: {})", allowed.join(", "))]
pub(crate) struct ImageNotAllowed {
    pub image: String,
    pub allowed: Vec<String>,
}

/// The repository of `image` (`repo:tag`, `repo@digest` or both), or None when it names
/// neither a tag nor a digest, which the admission policy refuses too.
///
/// Hand-written rather than with an OCI reference parser: those normalise names (adding
/// `docker.io/library/`), while the admission policy compares the strings as written, and
/// the two checks must agree.
fn repository(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A ':' before the last '/' is a registry's port, not a tag.
    let tag_at = name.rfind(':').filter(|&i| name.rfind('/').is_none_or(|slash| i > slash));
    let (repo, tag) = match tag_at {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    };
    let named = |s: Option<&str>| s.is_some_and(|s| !s.is_empty());
    (!repo.is_empty() && (named(tag) || named(digest))).then_some(repo)
}

impl BotDefaults {
    /// The repositories bot images may come from: `--bot-image`'s first, then the extra ones.
    pub(crate) fn allowed_repositories(&self) -> Vec<String> {
        let own = repository(&self.image).unwrap_or(&self.image).to_string();
        let mut all = vec![own];
        for r in &self.image_repositories {
            if !r.is_empty() && !all.contains(r) {
                all.push(r.clone());
            }
        }
        all
    }
}

/// Checks the image `bot`'s pods would run.
pub(crate) fn check(bot: &MusicBot, defaults: &BotDefaults) -> Result<(), ImageNotAllowed> {
    let Some(image) = bot.spec.pod.as_ref().and_then(|p| p.image.as_deref()) else {
        return Ok(());
    };
    let allowed = defaults.allowed_repositories();
    match repository(image) {
        Some(repo) if allowed.iter().any(|a| a == repo) => Ok(()),
        _ => Err(ImageNotAllowed { image: image.to_string(), allowed }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use musicbot_api::crd::MusicBotSpec;
    use serde_json::json;

    fn bot(image: Option<&str>) -> MusicBot {
        let mut spec = json!({"clientId": "123456789012345678", "tokenSecretRef": {"name": "t"}});
        if let Some(image) = image {
            spec["pod"] = json!({"image": image});
        }
        MusicBot::new("radio", serde_json::from_value::<MusicBotSpec>(spec).unwrap())
    }

    fn defaults() -> BotDefaults {
        BotDefaults {
            image: "ghcr.io/acme/bot-runner:1.2".into(),
            image_repositories: vec!["registry.internal:5000/music/bot-runner".into()],
            ..BotDefaults::default()
        }
    }

    #[test]
    fn the_repository_is_the_name_without_tag_or_digest() {
        assert_eq!(repository("a/b:1"), Some("a/b"));
        assert_eq!(repository("a/b@sha256:00"), Some("a/b"));
        assert_eq!(repository("a/b:1@sha256:00"), Some("a/b"));
        assert_eq!(repository("host:5000/b:1"), Some("host:5000/b"));
        assert_eq!(repository("host:5000/b"), None, "a port is not a tag");
        assert_eq!(repository("a/b"), None);
        assert_eq!(repository("a/b:"), None);
        assert_eq!(repository(":1"), None);
        assert_eq!(repository(""), None);
    }

    #[test]
    fn images_from_the_default_or_listed_repositories_are_allowed() {
        let d = defaults();
        assert_eq!(check(&bot(None), &d), Ok(()));
        for ok in [
            "ghcr.io/acme/bot-runner:2.0",
            "ghcr.io/acme/bot-runner@sha256:abc",
            "registry.internal:5000/music/bot-runner:7",
        ] {
            assert_eq!(check(&bot(Some(ok)), &d), Ok(()), "{ok}");
        }
    }

    #[test]
    fn other_images_are_refused_naming_the_allowed_repositories() {
        let d = defaults();
        for bad in [
            "registry.example/miner:1",
            "ghcr.io/acme/bot-runner",
            "ghcr.io/acme/bot-runner-evil:1",
            "ghcr.io/acme/bot-runner/sub:1",
            "ghcr.io/acme:1",
            "registry.internal:5000/music/bot-runner",
        ] {
            let err = check(&bot(Some(bad)), &d).unwrap_err();
            assert_eq!(err.allowed, ["ghcr.io/acme/bot-runner", "registry.internal:5000/music/bot-runner"], "{bad}");
            assert!(err.to_string().contains("allowed: ghcr.io/acme/bot-runner, registry.internal"), "{err}");
        }
    }
}
