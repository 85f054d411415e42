//! `refrain doctor [--config FILE]`: what is wrong with this machine's set-up, one line per
//! check, before `refrain serve` or `refrain node` fails on it. Each line is `ok`, `warn` (works,
//! but not as intended) or `FAIL` (the service would not work), and a failing line says how to
//! fix it. The exit status is non-zero when anything fails.
//!
//! It reads the same configuration as `refrain serve` (file, `REFRAIN_*`, the same flags) and
//! checks, in order: the configuration itself; ONNX Runtime (found, loadable, version, whether
//! CUDA is built in and works on each configured GPU); the visible NVIDIA GPUs; espeak-ng and
//! its en-us voice; the bundle (manifest, `SHA256SUMS`, every graph's signature); the data
//! folder (writable, free space); NATS (reachable, version, JetStream) when the queue is NATS;
//! and whether the listen address is free. [`host`] holds the machine's checks, [`setup`] those
//! of the configured service.

mod host;
mod setup;

use std::net::SocketAddr;
use std::path::PathBuf;

use refrain_orchestrator::config::{Config, Overrides};

use super::serve::DEFAULT_CONFIG;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// TOML configuration file (default: config/default.toml when present).
    #[arg(long, env = "REFRAIN_CONFIG")]
    config: Option<PathBuf>,
    /// Address the service would listen on.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (job store, uploads, outputs).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Model bundle directory or manifest.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Path of libonnxruntime.so (default: the configuration's, ORT_DYLIB_PATH, then .ort/lib).
    #[arg(long)]
    ort_library: Option<PathBuf>,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub status: Status,
    pub name: &'static str,
    pub detail: String,
    /// What to do about a warning or a failure.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            status: Status::Ok,
            name,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Warn,
            name,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            name,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        // One line per check, whatever the detail or fix holds (a TOML parse error spans lines).
        write!(
            f,
            "{status:<4}  {:<14} {}",
            self.name,
            one_line(&self.detail)
        )?;
        if let Some(fix) = &self.fix {
            write!(f, " — fix: {}", one_line(fix))?;
        }
        Ok(())
    }
}

/// `text`'s lines, trimmed and without the empty ones, joined by spaces.
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\n') {
        return text.into();
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ").into()
}

/// Runs every check, printing each line as it is known; an error when any failed.
pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let mut failed = 0;
    let mut report = |check: Check| {
        if check.status == Status::Fail {
            failed += 1;
        }
        println!("{check}");
    };
    let file = args.config.clone().or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG);
        p.is_file().then_some(p)
    });
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        bundle: args.bundle,
    };
    let shown = file
        .as_ref()
        .map_or("built-in defaults".to_string(), |f| f.display().to_string());
    let config = match Config::load(file.as_deref(), &overrides) {
        Ok(mut config) => {
            if args.ort_library.is_some() {
                config.ort_library = args.ort_library;
            }
            match setup::devices(&config) {
                Ok(devices) => {
                    report(Check::ok("config", format!("{shown} is valid")));
                    Some((config, devices))
                }
                Err(e) => {
                    report(Check::fail(
                        "config",
                        format!("{shown}: {e}"),
                        "list devices as \"cpu\", \"cuda\", \"cuda:N\" or \"tensorrt:N\"",
                    ));
                    None
                }
            }
        }
        Err(e) => {
            let fix = if file.as_ref().is_some_and(|f| !f.is_file()) {
                "name an existing file with --config or REFRAIN_CONFIG (config/default.toml and \
                 config/distributed.toml are examples)"
                    .to_string()
            } else {
                format!(
                    "correct {shown} (config/default.toml documents every key) or the REFRAIN_* \
                     variable named"
                )
            };
            report(Check::fail("config", format!("{shown}: {e}"), fix));
            None
        }
    };
    let Some((config, devices)) = config else {
        // Everything else depends on the configuration.
        anyhow::bail!("1 check failed: the configuration, which the other checks need");
    };

    let gpus = host::gpus(&devices);
    let runtime = host::onnx_runtime(&config, &mut report);
    let bundle = setup::bundle_manifest(&config, &mut report);
    host::execution_providers(
        runtime.as_ref(),
        bundle.as_ref(),
        &devices,
        &gpus,
        &mut report,
    );
    report(gpus.check.clone());
    report(host::espeak());
    if let Some(bundle) = &bundle {
        report(setup::bundle_checksums(bundle));
        report(setup::bundle_graphs(&config, runtime.is_some()));
    }
    for check in setup::data_folder(&config.data_dir) {
        report(check);
    }
    report(setup::nats(&config));
    report(setup::listen(&config));

    if failed > 0 {
        anyhow::bail!(
            "{failed} check{} failed",
            if failed == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
