//! The subcommands of the `refrain` binary.

pub mod generate;
pub mod lyrics;
pub mod node;
pub mod serve;

use std::path::PathBuf;

/// The committed analytic test bundle, the default everywhere.
pub const DEFAULT_BUNDLE: &str = "models/test-bundle";

/// Reads a text file the user named, with the path in the error.
pub fn read_text(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))
}

/// Options shared by commands that load a bundle.
#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// Model bundle: a directory with bundle.toml, or a manifest file.
    #[arg(long, env = "REFRAIN_BUNDLE", default_value = DEFAULT_BUNDLE)]
    pub bundle: PathBuf,
}
