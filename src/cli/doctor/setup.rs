//! The configured service's checks of `refrain doctor`: the devices, the bundle (manifest,
//! checksums, graphs), the data folder, NATS and the listen address.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use refrain_inference::pipeline::Generator;
use refrain_inference::runtime::Device;
use refrain_model::bundle::checksums::SUMS_FILE;
use refrain_model::bundle::{Bundle, BundleError};
use refrain_orchestrator::config::{Backend, Config};

use super::Check;

/// Below this much free space in the data folder: a warning (a 285 s song is 50 MB of WAV).
const LOW_SPACE: u64 = 5 << 30;
/// Below this: a failure (a few songs, then writes fail).
const NO_SPACE: u64 = 512 << 20;
/// How long the NATS check waits for the server.
const NATS_DEADLINE: Duration = Duration::from_secs(3);

/// The configured devices, parsed.
pub fn devices(config: &Config) -> Result<Vec<Device>, String> {
    config
        .devices
        .iter()
        .map(|d| d.parse::<Device>().map_err(|e| e.to_string()))
        .collect()
}

/// The manifest loads and names only files that exist.
pub fn bundle_manifest(config: &Config, report: &mut impl FnMut(Check)) -> Option<Bundle> {
    match Bundle::load(&config.bundle) {
        Ok(b) => {
            let m = &b.manifest;
            report(Check::ok(
                "bundle",
                format!(
                    "{} {} at {} ({} DiT(s), languages {})",
                    m.name,
                    m.version,
                    config.bundle.display(),
                    m.dit.len(),
                    m.lyrics.languages.join(", ")
                ),
            ));
            Some(b)
        }
        Err(e) => {
            let fix = match &e {
                BundleError::Read { .. } => {
                    "point `bundle` (or --bundle) at a bundle folder with bundle.toml and every \
                     file it names (models/test-bundle for the test bundle)"
                }
                BundleError::Parse { .. } | BundleError::Invalid { .. } => {
                    "correct bundle.toml (models/test-bundle/bundle.toml shows every section and \
                     key) or export the bundle again (tools/export-bundle)"
                }
                BundleError::MissingFile { .. } => {
                    "copy the missing file into the bundle folder, or export the bundle again \
                     (tools/export-bundle)"
                }
            };
            report(Check::fail("bundle", e.to_string(), fix));
            None
        }
    }
}

/// Every file `SHA256SUMS` lists has its digest.
pub fn bundle_checksums(bundle: &Bundle) -> Check {
    let name = "checksums";
    match bundle.verify_checksums() {
        Ok(None) => Check::warn(
            name,
            format!(
                "no {SUMS_FILE} in {}: files not verified",
                bundle.dir.display()
            ),
            format!(
                "write one where the bundle is known to be good: `cd {} && sha256sum *.onnx *.json \
                 *.toml *.f32 > {SUMS_FILE}`",
                bundle.dir.display()
            ),
        ),
        Ok(Some(v)) if !v.unlisted.is_empty() => Check::warn(
            name,
            format!(
                "{} file(s) match {SUMS_FILE}, but it does not list {}",
                v.files,
                v.unlisted
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!("add them to {SUMS_FILE} (`sha256sum FILE >> {SUMS_FILE}`)"),
        ),
        Ok(Some(v)) => Check::ok(
            name,
            format!(
                "{} file(s), {:.1} MB, match {SUMS_FILE}",
                v.files,
                v.bytes as f64 / 1e6
            ),
        ),
        Err(e) => Check::fail(
            name,
            e.to_string(),
            "the file is damaged or not the one the bundle was made with: copy the bundle again \
             from its source (then `sha256sum -c SHA256SUMS` in its folder passes)",
        ),
    }
}

/// Every graph loads on the CPU with the inputs and outputs the pipeline expects.
pub fn bundle_graphs(config: &Config, runtime_loaded: bool) -> Check {
    let name = "graphs";
    if !runtime_loaded {
        return Check::fail(
            name,
            "not checked: ONNX Runtime is not loaded",
            "fix ONNX Runtime first",
        );
    }
    let started = Instant::now();
    match Generator::load(
        &config.bundle,
        super::super::generator_config(config, Device::Cpu),
    ) {
        Ok(g) => Check::ok(
            name,
            format!(
                "{} DiT(s), VAE and style encoders load on the CPU with the expected signatures \
                 ({:.1} s)",
                g.bundle().manifest.dit.len(),
                started.elapsed().as_secs_f64()
            ),
        ),
        Err(e) => Check::fail(
            name,
            e.to_string(),
            "the bundle's graphs do not match its manifest: export the bundle again",
        ),
    }
}

/// The data folder is a folder the service can write (or can be created), with free space.
pub fn data_folder(dir: &Path) -> Vec<Check> {
    let name = "data folder";
    let fix = format!(
        "make {} a folder this user can write (e.g. `sudo install -d -o $USER {}`), or choose \
         another with --data-dir / data_dir",
        dir.display(),
        dir.display()
    );
    let existing = match writable(dir) {
        Ok(WritableAt::Itself) => {
            let mut detail = format!("{} is writable", dir.display());
            if dir.join("jobs.sled").is_dir() {
                detail.push_str(" (holds a job store)");
            }
            vec![Check::ok(name, detail)]
        }
        Ok(WritableAt::Ancestor(a)) => vec![Check::ok(
            name,
            format!(
                "{} does not exist yet; refrain serve creates it in {} (writable)",
                dir.display(),
                a.display()
            ),
        )],
        Err(why) => return vec![Check::fail(name, format!("{}: {why}", dir.display()), fix)],
    };
    let mut out = existing;
    out.push(free_space(dir));
    out
}

enum WritableAt {
    Itself,
    Ancestor(PathBuf),
}

/// Writes and removes a probe file in `dir`, or in the nearest existing ancestor when `dir`
/// does not exist yet.
fn writable(dir: &Path) -> Result<WritableAt, String> {
    let probe = |d: &Path| -> Result<(), String> {
        let file = d.join(format!(".refrain-doctor-{}", std::process::id()));
        std::fs::write(&file, b"probe")
            .map_err(|e| format!("cannot write in {}: {e}", d.display()))?;
        let _ = std::fs::remove_file(&file);
        Ok(())
    };
    if dir.exists() {
        if !dir.is_dir() {
            return Err("exists but is not a folder".into());
        }
        return probe(dir).map(|()| WritableAt::Itself);
    }
    let mut ancestor = dir.parent();
    while let Some(a) = ancestor {
        let a = if a.as_os_str().is_empty() {
            Path::new(".")
        } else {
            a
        };
        if a.exists() {
            if !a.is_dir() {
                return Err(format!(
                    "cannot be created: {} is not a folder",
                    a.display()
                ));
            }
            return probe(a).map(|()| WritableAt::Ancestor(a.to_path_buf()));
        }
        ancestor = a.parent();
    }
    Err("no existing parent folder".into())
}

/// Free space where the data folder is (or will be), from `df`.
fn free_space(dir: &Path) -> Check {
    let name = "free space";
    let at = dir
        .ancestors()
        .find(|a| a.exists() && !a.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out = Command::new("df").arg("-Pk").arg(at).output();
    let available = out.ok().and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let line = text.lines().nth(1)?.to_string();
        line.split_whitespace().nth(3)?.parse::<u64>().ok()
    });
    let Some(kib) = available else {
        return Check::warn(
            name,
            format!("could not ask `df` about {}", at.display()),
            "check the free space yourself (`df -h`)",
        );
    };
    let bytes = kib * 1024;
    let detail = format!(
        "{:.1} GiB free at {}",
        bytes as f64 / (1u64 << 30) as f64,
        at.display()
    );
    let fix = "free space there, or move data_dir to a larger disk (about 50 MB per 285 s song)";
    if bytes < NO_SPACE {
        Check::fail(name, detail, fix)
    } else if bytes < LOW_SPACE {
        Check::warn(name, detail, fix)
    } else {
        Check::ok(name, detail)
    }
}

/// NATS reachable, ≥ 2.10, with JetStream, when the queue backend is NATS.
pub fn nats(config: &Config) -> Check {
    let name = "nats";
    if config.queue.backend != Backend::Nats {
        return Check::ok(name, "not used (queue.backend = \"embedded\")");
    }
    let url = &config.nats.url;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return Check::fail(name, format!("async runtime: {e}"), "retry"),
    };
    let probe = runtime.block_on(refrain_nats::probe::probe(&config.nats, NATS_DEADLINE));
    let (major, minor) = refrain_nats::probe::MIN_SERVER_VERSION;
    match probe {
        Err(e) => Check::fail(
            name,
            e.to_string(),
            format!(
                "start nats-server {major}.{minor} or later with JetStream where {url} points \
                 (`nats-server -js -sd /var/lib/nats`), or correct nats.url / REFRAIN_NATS__URL \
                 and the credentials"
            ),
        ),
        Ok(p) if !p.version_ok => Check::fail(
            name,
            format!("{url}: nats-server {} is too old", p.version),
            format!("upgrade to nats-server {major}.{minor} or later (tools/fetch-nats-server.sh)"),
        ),
        Ok(p) => match p.jetstream {
            Ok(streams) => Check::ok(
                name,
                format!(
                    "{url}: nats-server {}, JetStream enabled ({streams} stream(s))",
                    p.version
                ),
            ),
            Err(e) => Check::fail(
                name,
                format!("{url}: nats-server {}, no JetStream: {e}", p.version),
                "enable JetStream (`nats-server -js`, or `jetstream {}` in its configuration) for \
                 this account",
            ),
        },
    }
}

/// Nothing listens on the configured address yet.
pub fn listen(config: &Config) -> Check {
    let name = "listen";
    let addr = config.listen;
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Check::ok(name, format!("{addr} is free")),
        Err(e) if e.kind() == ErrorKind::AddrInUse => Check::fail(
            name,
            format!("{addr} is in use (is refrain serve already running?)"),
            format!(
                "stop what listens there (`ss -ltnp 'sport = :{}'` shows it) or choose another \
                 address with --listen / listen",
                addr.port()
            ),
        ),
        Err(e) => Check::fail(
            name,
            format!("cannot listen on {addr}: {e}"),
            "choose an address of this machine with --listen / listen",
        ),
    }
}
