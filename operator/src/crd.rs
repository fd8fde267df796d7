//! The CRD as committed in `crds/` and the chart, generated from musicbot-api's types.

use musicbot_api::crd::MusicBot;

pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    Ok(format!("---\n{}", serde_yaml::to_string(&MusicBot::crd())?))
}
