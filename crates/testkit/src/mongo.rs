//! SecantusDB: a MongoDB wire-protocol server on WiredTiger (PyPI `secantusdb`). It presents
//! a one-member replica set, so change streams and transactions work.

use crate::process::Guarded;
use crate::{bins, net};
use anyhow::{Context, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::OnceCell;

pub struct MongoServer {
    process: Option<Guarded>,
    host: IpAddr,
    port: u16,
    data: PathBuf,
    remove_dir_on_exit: bool,
    // Last field: removed after the server has stopped.
    dir: tempfile::TempDir,
}

static SHARED: OnceCell<MongoServer> = OnceCell::const_new();

impl MongoServer {
    /// One server shared by every test in this binary; tests isolate themselves by database
    /// name (see [`MongoServer::database_name`]).
    pub async fn shared() -> &'static MongoServer {
        SHARED
            // Statics are never dropped: let the guard remove everything at exit.
            .get_or_try_init(|| Self::start_with(true, IpAddr::V4(Ipv4Addr::LOCALHOST)))
            .await
            .unwrap_or_else(|e| panic!("could not start SecantusDB: {e:#}"))
    }

    /// A fresh server with its own data directory, stopped and removed on drop.
    pub async fn start() -> Result<Self> {
        Self::start_with(false, IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// A server for the whole test binary listening on `host` (the test node's bridge
    /// address: pods reach the host only there), removed at exit.
    pub async fn start_for_pods(host: IpAddr) -> Result<Self> {
        Self::start_with(true, host).await
    }

    async fn start_with(remove_dir_on_exit: bool, host: IpAddr) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("musicbot-mongo-").tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let mut server = Self { process: None, host, port: net::free_port(), data, remove_dir_on_exit, dir };
        server.launch().await?;
        Ok(server)
    }

    async fn launch(&mut self) -> Result<()> {
        let bin = bins::secantusd()?;
        let dir = self.dir.path();
        let process = Guarded::spawn(
            "secantusd",
            &bin,
            &[
                "--host".into(),
                self.host.to_string(),
                "--port".into(),
                self.port.to_string(),
                "--storage-path".into(),
                self.data.display().to_string(),
                "--log-level".into(),
                "WARNING".into(),
            ],
            // It also reads ./secantusd.toml and ~/.secantus/: give it a cwd and HOME of its own.
            dir,
            &dir.join("secantusd.log"),
            self.remove_dir_on_exit.then_some(dir),
            &[("HOME", dir.to_str().context("temp dir is not UTF-8")?)],
        )?;
        net::wait_for_addr(SocketAddr::new(self.host, self.port), Duration::from_secs(60), || process.is_alive())
            .await
            .with_context(|| process.log_tail())?;
        self.process = Some(process);
        Ok(())
    }

    /// Stops the server and starts it again on the same port and data directory.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop();
        self.launch().await
    }

    /// Stops the server, keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for this server (a direct connection: the replica set's member
    /// name is not guaranteed to resolve).
    pub fn uri(&self) -> String {
        format!("mongodb://{}:{}/?directConnection=true", self.host, self.port)
    }

    pub async fn client(&self) -> Result<mongodb::Client> {
        Ok(mongodb::Client::with_uri_str(self.uri()).await?)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// A database name unique to one test.
    pub fn database_name(prefix: &str) -> String {
        use std::hash::{BuildHasher, RandomState};
        format!("{prefix}_{:08x}", RandomState::new().hash_one(std::time::SystemTime::now()) as u32)
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
