//! Prints the MusicBot CustomResourceDefinition as YAML (committed as `crds/musicbot.yaml`).

fn main() -> anyhow::Result<()> {
    print!("{}", musicbot_operator::crd::crd_yaml()?);
    Ok(())
}
