//! Extra CA certificates (`--ca-file`, `MUSICBOT_CA_FILE`), trusted in addition to the
//! system's roots: a private voice server, or a test simulator's CA.
//!
//! songbird dials the voice gateway through tokio-tungstenite, which reads its roots with
//! rustls-native-certs on every connection; that honours `SSL_CERT_FILE`, which *replaces*
//! the system's roots. So at start-up the system's roots and the extra ones are written to
//! one bundle under the temporary directory (a pod's root file system is read-only; its
//! `/tmp` is an emptyDir) and `SSL_CERT_FILE` is pointed at it. reqwest clients, which are
//! built with their own root store, get the extra certificates added directly.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tracing::{info, warn};

static EXTRA: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();

/// The bundle file; removed when dropped (hold it for the life of the process).
pub struct Bundle {
    file: tempfile::TempPath,
    pub system_roots: usize,
    pub extra: usize,
}

impl Bundle {
    pub fn path(&self) -> &Path {
        &self.file
    }
}

/// Reads `extra`, writes the bundle and sets `SSL_CERT_FILE` for this process.
///
/// Must run before any other thread starts (before the tokio runtime): it changes the
/// environment, which other threads may be reading.
pub fn install(extra: &Path) -> Result<Bundle> {
    let pem = std::fs::read(extra).with_context(|| format!("reading the CA file {}", extra.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(CertificateDer::into_owned))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("the CA file {} is not PEM", extra.display()))?;
    if certs.is_empty() {
        bail!("the CA file {} holds no certificate", extra.display());
    }
    // What songbird would trust without us (SSL_CERT_FILE if the user set one, else the
    // system's store), so adding a CA never takes one away.
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        warn!(error = %e, "reading the system's CA certificates");
    }
    let mut file = tempfile::Builder::new()
        .prefix("musicbot-ca-bundle-")
        .suffix(".pem")
        .tempfile()
        .context("creating the CA bundle in the temporary directory ($TMPDIR or /tmp)")?;
    for cert in native.certs.iter().chain(&certs) {
        file.write_all(to_pem(cert).as_bytes()).context("writing the CA bundle")?;
    }
    file.flush().context("writing the CA bundle")?;
    let bundle = Bundle { file: file.into_temp_path(), system_roots: native.certs.len(), extra: certs.len() };
    // SAFETY: the caller runs this before any other thread exists, so nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("SSL_CERT_FILE", bundle.path()) };
    let _ = EXTRA.set(certs);
    info!(
        ca_file = %extra.display(),
        bundle = %bundle.path().display(),
        system_roots = bundle.system_roots,
        extra = bundle.extra,
        "trusting extra CA certificates"
    );
    Ok(bundle)
}

/// The extra certificates, once `install` ran (none otherwise).
pub fn extra_roots() -> &'static [CertificateDer<'static>] {
    EXTRA.get().map(Vec::as_slice).unwrap_or(&[])
}

/// A reqwest client builder (rustls, as serenity builds its own) that trusts the extra
/// certificates besides its built-in roots.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    for cert in extra_roots() {
        match reqwest::Certificate::from_der(cert) {
            Ok(c) => b = b.add_root_certificate(c),
            Err(e) => warn!(error = %e, "an extra CA certificate is unusable for HTTP"),
        }
    }
    b
}

fn to_pem(cert: &CertificateDer<'_>) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips() {
        let der = CertificateDer::from((0u8..=200).collect::<Vec<u8>>());
        let pem = to_pem(&der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let back: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, vec![der]);
    }
}
