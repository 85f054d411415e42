//! `refrain backup --to DIR`: a consistent copy of the data folder (the sled job store, uploads,
//! results, API keys) that a restore makes the data folder again. The copy is made through the
//! store (`refrain_orchestrator::store::backup`), never by copying sled's files, so it is
//! consistent. sled lets one process open the store: while `refrain serve` runs on the data
//! folder, this command asks it (`POST /api/v1/admin/backup` on the configured listen address,
//! allowed from the same machine only, with `REFRAIN_API_KEY` when keys are configured) to
//! make the backup under `<data_dir>/backups/`, then moves it to `--to`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use refrain_orchestrator::config::{Config, Overrides};
use refrain_orchestrator::store::backup::{backup, STORE_DIR};
use refrain_orchestrator::store::JobStore;

use super::serve::DEFAULT_CONFIG;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Folder to write the backup into (created; must be empty if it exists).
    #[arg(long)]
    to: PathBuf,
    /// TOML configuration file (default: config/default.toml when present).
    #[arg(long, env = "REFRAIN_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory to back up (default: the configuration's).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where the running service listens (default: the configuration's `listen`).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// API key for a running service that has keys configured.
    #[arg(long, env = "REFRAIN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    let file = args.config.clone().or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG);
        p.is_file().then_some(p)
    });
    let overrides = Overrides {
        data_dir: args.data_dir,
        listen: args.listen,
        ..Overrides::default()
    };
    let config = Config::load(file.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
    let store_dir = config.store_dir();
    if !store_dir.is_dir() {
        anyhow::bail!(
            "{} holds no job store ({STORE_DIR}): nothing to back up",
            config.data_dir.display()
        );
    }
    if args.to.exists() && std::fs::read_dir(&args.to)?.next().is_some() {
        anyhow::bail!(
            "backup destination {} exists and is not empty",
            args.to.display()
        );
    }
    let store = match JobStore::open(&store_dir) {
        Ok(store) => store,
        Err(e) if e.to_string().contains("lock") => {
            return backup_through_service(&config, args.api_key.as_deref(), &args.to);
        }
        Err(e) => anyhow::bail!("cannot open the job store {}: {e}", store_dir.display()),
    };
    let summary = backup(&store, &config.data_dir, &args.to)?;
    println!(
        "backed up {} job(s) and {} file(s) ({:.1} MB) from {} to {}",
        summary.jobs,
        summary.files,
        summary.bytes as f64 / 1e6,
        config.data_dir.display(),
        args.to.display()
    );
    Ok(())
}

/// Asks the running service on this machine for the backup, then moves it to `to`.
fn backup_through_service(config: &Config, key: Option<&str>, to: &Path) -> anyhow::Result<()> {
    let mut addr = config.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let url = format!("http://{addr}/api/v1/admin/backup");
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(None)
        .build()?;
    let mut request = client.post(&url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().with_context(|| {
        format!(
            "the job store {} is held by another process, and no refrain serve answers at {url}",
            config.store_dir().display()
        )
    })?;
    let status = response.status();
    let body: serde_json::Value = response.json().unwrap_or_default();
    if !status.is_success() {
        let why = body["error"]["message"]
            .as_str()
            .unwrap_or("no reason given");
        anyhow::bail!("the running service refused the backup ({status}): {why}");
    }
    let made = PathBuf::from(body["path"].as_str().unwrap_or_default());
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    if to.exists() {
        std::fs::remove_dir(to)?; // empty (checked above)
    }
    if std::fs::rename(&made, to).is_err() {
        // Another file system: copy, then remove the service's copy.
        copy_tree(&made, to)?;
        std::fs::remove_dir_all(&made)?;
    }
    println!(
        "backed up {} job(s) and {} file(s) ({:.1} MB) from the running service to {}",
        body["jobs"],
        body["files"],
        body["bytes"].as_f64().unwrap_or(0.0) / 1e6,
        to.display()
    );
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dst = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &dst)?;
        } else {
            std::fs::copy(entry.path(), dst)?;
        }
    }
    Ok(())
}
