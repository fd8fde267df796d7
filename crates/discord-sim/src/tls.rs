//! TLS for the voice gateway: songbird always dials `wss://`, so the simulator serves a
//! certificate from a CA made for this run; the bot trusts that CA through `SSL_CERT_FILE`
//! (read by rustls-native-certs), never by turning verification off.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tempfile::TempDir;

use crate::pki::CertAuthority;

/// The run's CA (written to a file) and the voice gateway's server configuration.
pub struct SimTls {
    dir: TempDir,
    ca_file: PathBuf,
    ca_pem: String,
    /// Names in the certificate besides loopback.
    names: Vec<String>,
    config: Arc<ServerConfig>,
}

impl SimTls {
    /// A certificate for loopback (127.0.0.1, localhost) only.
    pub fn generate() -> Result<Self> {
        Self::generate_for(&[])
    }

    /// A certificate for loopback and `addresses`: the simulator's bind address when pods
    /// reach it on a bridge address.
    pub fn generate_for(addresses: &[IpAddr]) -> Result<Self> {
        let ca = CertAuthority::new("musicbot discord simulator CA")?;
        let extra: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        let leaf = ca.server_for("discord simulator voice", &extra)?;
        let dir = tempfile::Builder::new().prefix("discord-sim-").tempdir()?;
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.cert_pem).with_context(|| format!("writing {}", ca_file.display()))?;
        let chain = vec![
            CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())?,
            CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())?,
        ];
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?;
        // The provider is passed explicitly, so the process-wide default stays the test's choice.
        let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        Ok(Self { dir, ca_file, ca_pem: ca.cert_pem, names: extra, config: Arc::new(config) })
    }

    /// The CA certificate (PEM) to put in `SSL_CERT_FILE`.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Whether the voice certificate names `ip` (loopback always is).
    pub fn covers(&self, ip: IpAddr) -> bool {
        ip == IpAddr::from([127, 0, 0, 1]) || self.names.contains(&ip.to_string())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}
