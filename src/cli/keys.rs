//! `refrain keys add NAME` and `refrain keys list`: the API keys of Refrain's own API and of the task API. A new key
//! is printed once on stdout and only its SHA-256 is stored, in `<data_dir>/api-keys.json` of the
//! same configuration `refrain serve` reads (so `--config`/`--data-dir` must match the server's).
//! The server re-reads the file when it changes.

use std::path::PathBuf;

use refrain_orchestrator::api::v1::auth::{add_key_for, ApiKeys};
use refrain_orchestrator::config::{Config, Overrides};

use super::serve::DEFAULT_CONFIG;

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    /// TOML configuration file (default: config/default.toml when present).
    #[arg(long, env = "REFRAIN_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory (where api-keys.json lives).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// Creates a key named NAME (the owner of the jobs made with it) and prints it once.
    Add {
        name: String,
        /// Owner kinds (comma-separated, e.g. `telegram,discord`) whose end users this key may
        /// create jobs for (`on_behalf_of`): the key of `refrain bots`.
        #[arg(long, value_delimiter = ',')]
        on_behalf_of: Vec<String>,
    },
    /// Lists the key names and when they were made (never the keys).
    List,
}

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    let file = args.config.clone().or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG);
        p.is_file().then_some(p)
    });
    let overrides = Overrides {
        data_dir: args.data_dir,
        ..Overrides::default()
    };
    let config = Config::load(file.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
    let path = config.api_keys_path();
    match args.command {
        KeysCommand::Add { name, on_behalf_of } => {
            let key = add_key_for(&path, &name, &on_behalf_of).map_err(anyhow::Error::msg)?;
            eprintln!(
                "API key {name:?} added to {}; it is shown only now:",
                path.display()
            );
            println!("{key}");
        }
        KeysCommand::List => {
            for k in ApiKeys::new(path).current() {
                if k.on_behalf_of.is_empty() {
                    println!("{}\t{}", k.name, k.created_at);
                } else {
                    let kinds = k.on_behalf_of.join(",");
                    println!("{}\t{}\ton behalf of {kinds}", k.name, k.created_at);
                }
            }
        }
    }
    Ok(())
}
