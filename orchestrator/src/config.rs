//! The one typed configuration of `refrain serve`: defaults, then a TOML file, then `REFRAIN_*`
//! environment variables (nested keys with `__`, e.g. `REFRAIN_QUEUE__CAPACITY=0`), then
//! command-line flags. Unknown keys are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Everything `refrain serve` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Where the job store, uploads and outputs live.
    pub data_dir: PathBuf,
    /// The model bundle (a directory with bundle.toml, or a manifest file).
    pub bundle: PathBuf,
    /// Path of libonnxruntime.so (default: ORT_DYLIB_PATH, then .ort/lib).
    pub ort_library: Option<PathBuf>,
    /// One in-process inference node per entry: `cpu`, `cuda`, `cuda:N`. With the NATS backend
    /// this may be empty (the nodes are `refrain node` processes); entries run as in-process
    /// NATS nodes.
    pub devices: Vec<String>,
    /// ONNX Runtime intra-op threads per node (default: all cores).
    pub intra_threads: Option<usize>,
    pub queue: QueueConfig,
    pub limits: LimitsConfig,
    pub retention: RetentionConfig,
    pub inference: InferenceConfig,
    pub nats: NatsConfig,
}

/// The queue in front of the nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// `embedded` (sled, one machine) or `nats` (JetStream).
    pub backend: String,
    /// Jobs that may wait (queued, not running) before `POST /generate` answers 503. With 0 the
    /// server behaves like the single-job reference server: busy means 503.
    pub capacity: usize,
    /// Seconds a 503 asks the client to wait (`Retry-After`).
    pub retry_after_seconds: u64,
}

/// The NATS JetStream backend (`queue.backend = "nats"`), shared by `refrain serve` and
/// `refrain node`. Stream, consumer and bucket names are fixed (see `distributed::wire`); these
/// are the connection and the delivery settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated, e.g. `nats://127.0.0.1:4222` (`tls://…` requires TLS).
    pub url: String,
    /// A NATS credentials file (`.creds`: JWT and NKey seed) to authenticate with.
    pub credentials_file: Option<PathBuf>,
    /// A token to authenticate with.
    pub token: Option<String>,
    /// User and password to authenticate with.
    pub user: Option<String>,
    pub password: Option<String>,
    /// A PEM file of CA certificates to trust for TLS (implies TLS).
    pub tls_ca_file: Option<PathBuf>,
    /// Seconds a node may hold a job without an in-progress ack before it is delivered again
    /// (nodes send one every third of it while a job runs).
    pub ack_wait_seconds: u64,
    /// Jobs in flight at once over all nodes; must be at least the number of nodes.
    pub max_ack_pending: i64,
    /// Seconds within which a second publish of the same job id is dropped.
    pub duplicate_window_seconds: u64,
    /// Hours after which undelivered jobs, events and files are dropped by the server.
    pub max_age_hours: u64,
    /// Seconds one pull request waits for a job (short, so a lost pull after a server restart
    /// is noticed soon).
    pub fetch_expires_seconds: u64,
    /// Seconds between two node heartbeats; a node unheard for 3 of them is listed as lost.
    pub heartbeat_seconds: u64,
    /// Seconds a job waits before it is delivered again after a node error.
    pub retry_delay_seconds: u64,
    /// Stored chunk size of result and input files in the object store, bytes.
    pub object_chunk_bytes: usize,
}

/// Limits on what clients may send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest uploaded file (reference audio or song), bytes; larger answers 413.
    pub max_upload_bytes: usize,
    /// Largest whole request body, bytes; larger answers 413.
    pub max_body_bytes: usize,
    pub max_lyrics_bytes: usize,
    pub max_lyrics_lines: usize,
    pub max_line_chars: usize,
    /// Longest reference recording decoded, seconds.
    pub max_reference_seconds: f64,
}

/// How long results are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Finished jobs, their uploads and their results older than this are deleted (hours).
    pub max_age_hours: u64,
    /// How often the sweeper runs (seconds).
    pub sweep_interval_seconds: u64,
}

/// Node-side settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Overrides the sampler's time-grid points for every job (e.g. 2 for load tests).
    pub steps: Option<u32>,
    /// `auto`, `batched` or `separate` CFG evaluation.
    pub cfg_mode: String,
    /// Runs a job may take before it is marked failed (crashes and node errors count).
    pub max_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8000".parse().expect("valid address"),
            data_dir: PathBuf::from("data"),
            bundle: PathBuf::from("models/test-bundle"),
            ort_library: None,
            devices: vec!["cpu".into()],
            intra_threads: None,
            queue: QueueConfig::default(),
            limits: LimitsConfig::default(),
            retention: RetentionConfig::default(),
            inference: InferenceConfig::default(),
            nats: NatsConfig::default(),
        }
    }
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: None,
            token: None,
            user: None,
            password: None,
            tls_ca_file: None,
            ack_wait_seconds: 60,
            max_ack_pending: 256,
            duplicate_window_seconds: 120,
            max_age_hours: 7 * 24,
            fetch_expires_seconds: 10,
            heartbeat_seconds: 5,
            retry_delay_seconds: 2,
            object_chunk_bytes: 512 * 1024,
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            backend: "embedded".into(),
            capacity: 100,
            retry_after_seconds: 30,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_upload_bytes: 50 * 1024 * 1024,
            max_body_bytes: 110 * 1024 * 1024,
            max_lyrics_bytes: 64 * 1024,
            max_lyrics_lines: 1000,
            max_line_chars: 500,
            max_reference_seconds: 600.0,
        }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age_hours: 7 * 24,
            sweep_interval_seconds: 600,
        }
    }
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            steps: None,
            cfg_mode: "auto".into(),
            max_attempts: 3,
        }
    }
}

/// Command-line overrides (only the flags given).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<PathBuf>,
}

impl Config {
    /// Defaults < TOML file (if given; a missing file is an error) < `REFRAIN_*` env < flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, String> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.is_file() {
                return Err(format!("config file {} does not exist", f.display()));
            }
            fig = fig.merge(Toml::file_exact(f));
        }
        let config: Config = fig
            .merge(Env::prefixed("REFRAIN_").ignore(&["device"]).split("__"))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| format!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.devices.is_empty() && self.queue.backend != "nats" {
            return Err("devices must name at least one device (e.g. [\"cpu\"])".into());
        }
        if !["embedded", "nats"].contains(&self.queue.backend.as_str()) {
            return Err(format!(
                "queue.backend must be embedded or nats, not {:?}",
                self.queue.backend
            ));
        }
        if !["auto", "batched", "separate"].contains(&self.inference.cfg_mode.as_str()) {
            return Err(format!(
                "inference.cfg_mode must be auto, batched or separate, not {:?}",
                self.inference.cfg_mode
            ));
        }
        if self.inference.max_attempts == 0 {
            return Err("inference.max_attempts must be at least 1".into());
        }
        if self.queue.backend == "nats" {
            self.nats.validate()?;
        }
        if self.limits.max_upload_bytes == 0
            || self.limits.max_body_bytes < self.limits.max_upload_bytes
        {
            return Err("limits.max_body_bytes must be >= limits.max_upload_bytes > 0".into());
        }
        Ok(())
    }

    /// The job store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("jobs.sled")
    }

    /// Where uploads are kept.
    pub fn blobs_dir(&self) -> PathBuf {
        self.data_dir.join("uploads")
    }

    /// The root of all results; `output_dir` may only name a sub-folder of it.
    pub fn output_root(&self) -> PathBuf {
        self.data_dir.join("outputs")
    }
}

impl NatsConfig {
    /// Checks the delivery settings against each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.url.trim().is_empty() {
            return Err("nats.url must name a server, e.g. nats://127.0.0.1:4222".into());
        }
        if self.user.is_some() != self.password.is_some() {
            return Err("nats.user and nats.password go together".into());
        }
        if self.ack_wait_seconds < 3 {
            return Err("nats.ack_wait_seconds must be at least 3".into());
        }
        if self.max_ack_pending < 1 {
            return Err(
                "nats.max_ack_pending must be at least 1 (and at least the number of nodes)".into(),
            );
        }
        if self.fetch_expires_seconds == 0 || self.heartbeat_seconds == 0 || self.max_age_hours == 0
        {
            return Err(
                "nats.fetch_expires_seconds, heartbeat_seconds and max_age_hours must be positive"
                    .into(),
            );
        }
        if !(1024..=1024 * 1024).contains(&self.object_chunk_bytes) {
            return Err("nats.object_chunk_bytes must be from 1024 to 1048576".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_file_env_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:9000\"\n[queue]\ncapacity = 5\n").unwrap();
        let c = Config::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.queue.capacity, 5);
        assert_eq!(c.queue.backend, "embedded");
        let o = Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Overrides::default()
        };
        assert_eq!(Config::load(Some(&f), &o).unwrap().listen.port(), 0);
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[queue]\ncapacty = 5\n").unwrap();
        let e = Config::load(Some(&f), &Overrides::default()).unwrap_err();
        assert!(e.contains("capacty"), "{e}");
        let e =
            Config::load(Some(&dir.path().join("none.toml")), &Overrides::default()).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }
}
