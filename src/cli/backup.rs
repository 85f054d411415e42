//! `refrain backup --to DIR`: a consistent copy of the data folder (the sled job store, uploads,
//! results, API keys) that a restore makes the data folder again. The copy is made through the
//! store (`refrain_orchestrator::store::backup`), never by copying sled's files, so it is
//! consistent. sled lets one process open the store: while `refrain serve` runs on the data
//! folder, this command says so and stops (the service's own backup hook is the way then).

use std::path::PathBuf;

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
}

pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    let file = args.config.clone().or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG);
        p.is_file().then_some(p)
    });
    let overrides = Overrides {
        data_dir: args.data_dir,
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
    let store = JobStore::open(&store_dir).map_err(|e| {
        let text = e.to_string();
        if text.contains("lock") {
            anyhow::anyhow!(
                "the job store {} is open in a running refrain serve (sled allows one process): \
                 stop the service (`systemctl stop refrain`) and run this again",
                store_dir.display()
            )
        } else {
            anyhow::anyhow!("cannot open the job store {}: {text}", store_dir.display())
        }
    })?;
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
