//! The subcommands of the `refrain` binary.

pub mod backup;
pub mod bots;
pub mod client;
pub mod doctor;
pub mod generate;
pub mod keys;
pub mod lyrics;
pub mod node;
pub mod sample;
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

/// The generator settings of an inference node on `device` (in-process or `refrain node`), from
/// the service configuration.
pub fn generator_config(
    config: &refrain_orchestrator::Config,
    device: refrain_inference::runtime::Device,
) -> refrain_inference::pipeline::GeneratorConfig {
    refrain_inference::pipeline::GeneratorConfig {
        runtime: refrain_inference::runtime::RuntimeConfig {
            library: config.ort_library.clone(),
            device,
            intra_threads: config.intra_threads,
            // TensorRT engines take minutes to build: kept with the node's data.
            engine_cache: Some(config.data_dir.join("tensorrt")),
        },
        lyrics_limits: refrain_inference::lyrics::lrc::LyricsLimits {
            max_bytes: config.limits.max_lyrics_bytes,
            max_lines: config.limits.max_lyrics_lines,
            max_line_chars: config.limits.max_line_chars,
        },
        cfg_mode: config.inference.cfg_mode,
        max_reference_seconds: config.limits.max_reference_seconds,
        device: refrain_inference::runtime::DeviceSettings {
            memory_limit: config
                .inference
                .memory_limit_mb
                .map(|mb| mb.saturating_mul(1 << 20)),
            io_binding: config.inference.io_binding,
        },
    }
}

/// The worker settings of a node named `name`, from the service configuration.
pub fn worker_settings(
    config: &refrain_orchestrator::Config,
    name: String,
) -> refrain_inference::worker::WorkerSettings {
    refrain_inference::worker::WorkerSettings {
        name,
        steps: config.inference.steps,
        max_reference_seconds: config.limits.max_reference_seconds,
    }
}

#[cfg(test)]
mod tests {
    use refrain_inference::runtime::Device;
    use refrain_inference::sampler::CfgMode;
    use refrain_orchestrator::config::{Config, Overrides};

    #[test]
    fn the_inference_keys_reach_the_generator() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("refrain.toml");
        std::fs::write(
            &file,
            "[inference]\ncfg_mode = \"single\"\nmemory_limit_mb = 64\nio_binding = true\n",
        )
        .unwrap();
        let config = Config::load(Some(&file), &Overrides::default()).unwrap();
        let generator = super::generator_config(&config, Device::Cpu);
        assert_eq!(generator.cfg_mode, CfgMode::Single);
        assert_eq!(generator.device.memory_limit, Some(64 << 20));
        assert_eq!(generator.device.io_binding, Some(true));
        // Unset: no limit, IO binding left to the device.
        let generator = super::generator_config(&Config::default(), Device::Cpu);
        assert_eq!(generator.device, Default::default());
    }
}
