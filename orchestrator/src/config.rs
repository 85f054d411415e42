//! The one typed configuration of `refrain serve`: defaults, then a TOML file, then `REFRAIN_*`
//! environment variables (nested keys with `__`, e.g. `REFRAIN_QUEUE__CAPACITY=0`), then
//! command-line flags. Unknown keys are errors.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use refrain_nats::NatsConfig;

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
    /// One in-process inference node per entry: `cpu`, `cuda`, `cuda:N`, `tensorrt:N`. With the
    /// NATS backend this may be empty (the nodes are `refrain node` processes); entries run as
    /// in-process NATS nodes.
    pub devices: Vec<String>,
    /// ONNX Runtime intra-op threads per node (default: all cores).
    pub intra_threads: Option<usize>,
    pub queue: QueueConfig,
    pub limits: LimitsConfig,
    pub retention: RetentionConfig,
    pub inference: InferenceConfig,
    pub nats: NatsConfig,
    /// Bitrates of the lossy output formats (`[formats] mp3_kbps`, `opus_kbps`).
    pub formats: refrain_formats::EncodeSettings,
    /// Outbound fetches of client-given audio URLs.
    pub fetch: FetchConfig,
    /// Refrain's own API.
    pub api: ApiConfig,
    /// The PiAPI/Qubico task API (`[task_api]`): per-key limits, the public base URL.
    pub task_api: TaskApiConfig,
    /// The Riffusion-style API (`[riffusion_api]`): per-key limits.
    pub riffusion_api: RiffusionApiConfig,
    /// Webhook deliveries (`[webhooks]`): retries and timeouts.
    pub webhooks: WebhookConfig,
    /// Scheduled batches (`[[schedules]]`, see `docs/schedules.md`).
    pub schedules: Vec<crate::schedules::ScheduleSpec>,
    /// The chat bots of `refrain bots` (`[bots]`, see `docs/bots.md`).
    pub bots: protocol::bots::BotsConfig,
}

/// The PiAPI/Qubico task API (`[task_api]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskApiConfig {
    /// Per-key limits on task creation (0: none). The defaults are the hosted service's: 10
    /// tasks a minute, 3 pending or processing at once, 100 a day.
    pub limits: crate::jobs::limits::Quota,
    /// The base URL clients reach this server at (`https://songs.example.com`), for the
    /// absolute result URLs of tasks and webhooks. Default: `http://<listen address>`.
    pub public_url: Option<String>,
}

impl Default for TaskApiConfig {
    fn default() -> Self {
        TaskApiConfig {
            limits: crate::jobs::limits::Quota {
                concurrent: 3,
                per_minute: 10,
                per_day: 100,
            },
            public_url: None,
        }
    }
}

/// The Riffusion-style API (`[riffusion_api]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiffusionApiConfig {
    /// Per-key limits, counted in jobs (0: none); a request makes two (its takes), admitted
    /// together or not at all. The defaults are the task API's per request: 2 requests at
    /// once, 10 a minute, 100 a day.
    pub limits: crate::jobs::limits::Quota,
}

impl Default for RiffusionApiConfig {
    fn default() -> Self {
        RiffusionApiConfig {
            limits: crate::jobs::limits::Quota {
                concurrent: 4,
                per_minute: 20,
                per_day: 200,
            },
        }
    }
}

/// Webhook deliveries (`[webhooks]`, see [`crate::webhooks`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// How long a delivery is retried after its first attempt before it is given up.
    pub retry_for_seconds: u64,
    /// The wait before the first retry (milliseconds); it doubles with each failure.
    pub first_retry_ms: u64,
    /// The longest wait between two attempts.
    pub max_retry_seconds: u64,
    /// Deadline of one attempt (connect, send, answer).
    pub timeout_seconds: u64,
    /// Deliveries being sent at once (one per job at a time).
    pub max_in_flight: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            retry_for_seconds: 3600,
            first_retry_ms: 5000,
            max_retry_seconds: 600,
            timeout_seconds: 10,
            max_in_flight: 16,
        }
    }
}

/// Refrain's own API (`[api]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve `/api/v1` without API keys on a non-loopback address. Off: `refrain serve`
    /// refuses to listen beyond loopback while `<data_dir>/api-keys.json` holds no key.
    pub allow_unauthenticated: bool,
}

/// Every outbound request to a client-given URL: audio URLs (`style.audio_url`,
/// `input.style_audio`) and webhook endpoints ([`crate::outbound`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Allow URLs whose host is loopback, private, link-local or otherwise internal. Off by
    /// default: a client must not make the server call internal addresses. Turn it on only
    /// where every client is trusted (a private network, tests on loopback).
    pub allow_private_addresses: bool,
    /// Internal networks allowed all the same, in CIDR form (`["10.1.2.0/24", "::1/128"]`):
    /// a webhook receiver or an audio store on the operator's own network.
    pub allow: Vec<ipnet::IpNet>,
    /// Deadline for one whole fetch, redirects included (seconds).
    pub timeout_seconds: u64,
    /// Redirects followed (each one re-checked).
    pub max_redirects: usize,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            allow_private_addresses: false,
            allow: Vec::new(),
            timeout_seconds: 30,
            max_redirects: 3,
        }
    }
}

/// The queue in front of the nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// `embedded` (sled, one machine) or `nats` (JetStream).
    pub backend: Backend,
    /// Jobs that may wait (queued, not running) before `POST /generate` answers 503. With 0 the
    /// server behaves like the single-job reference server: busy means 503.
    pub capacity: usize,
    /// Seconds a 503 asks the client to wait (`Retry-After`).
    pub retry_after_seconds: u64,
    /// NATS backend: jobs published into the work stream ahead of need, beyond one per live
    /// node. Published jobs run in stream order, so a later interactive job or another owner's
    /// turn can only overtake what is not published yet; 1 keeps one job ready for the first
    /// node that finishes, 0 publishes only on demand (a node waits one round trip through
    /// the orchestrator between jobs).
    pub prefetch: usize,
}

/// The queue backend (`queue.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A sled tree in this process, with in-process nodes (one machine).
    #[default]
    Embedded,
    /// NATS JetStream, with `refrain node` processes anywhere.
    Nats,
}

pub use protocol::CfgMode;

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
    /// Most variants one job may ask for (`batch_infer_num`, `variants`).
    pub max_variants: u32,
    /// Most queued plus running jobs one owner may have; 0: no limit.
    pub per_owner_active: usize,
    /// Most jobs one owner may submit in 24 hours; 0: no limit.
    pub per_owner_daily: usize,
    /// How long an idempotency key names its job (hours, fractions allowed: 0.5 is half an
    /// hour): the same key and request within it return the same job, a different request
    /// with the key is refused (409). Keys of uploads are remembered as long.
    pub idempotency_hours: f64,
    /// How many uploads (`POST /api/v1/uploads`, `POST /riffusion/upload`) one owner may store
    /// (`[limits.uploads]`: 20 a minute, 200 a day by default; 0: no limit).
    pub uploads: crate::uploads::UploadLimits,
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
    pub cfg_mode: CfgMode,
    /// Runs a job may take before it is marked failed: runs that end in an error of the job
    /// (a node error, or its inference process dying under it). A crash or kill of the service
    /// or of a node is not the job's fault and does not count (see `max_interruptions`).
    pub max_attempts: u32,
    /// Runs in a row cut short by the death of the process running the job (kill -9, power
    /// loss, out of memory) after which the job fails as suspected of causing them. 0: never.
    /// Interruptions never use up `max_attempts`; a run that ends on its own resets the count.
    pub max_interruptions: u32,
    /// Memory ONNX Runtime may hold on a node's device, in MiB: the CUDA provider's
    /// `gpu_mem_limit` on a GPU, one shared CPU arena for the process on the CPU. An
    /// allocation over it is an out-of-memory error, which the node answers by running the
    /// DiT with fewer rows per call and the VAE chunked. None: no limit.
    pub memory_limit_mb: Option<u64>,
    /// Run the DiT through IO binding (inputs that do not change between steps bound once).
    /// None: on CUDA only. The results are the same either way.
    pub io_binding: Option<bool>,
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
            formats: refrain_formats::EncodeSettings::default(),
            fetch: FetchConfig::default(),
            api: ApiConfig::default(),
            task_api: TaskApiConfig::default(),
            riffusion_api: RiffusionApiConfig::default(),
            webhooks: WebhookConfig::default(),
            schedules: Vec::new(),
            bots: protocol::bots::BotsConfig::default(),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            backend: Backend::Embedded,
            capacity: 100,
            retry_after_seconds: 30,
            prefetch: 1,
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
            max_variants: 5,
            per_owner_active: 0,
            per_owner_daily: 0,
            idempotency_hours: 24.0,
            uploads: crate::uploads::UploadLimits::default(),
        }
    }
}

impl LimitsConfig {
    /// How long an idempotency key is remembered, in milliseconds (`idempotency_hours`).
    pub fn idempotency_ms(&self) -> u64 {
        // A float-to-integer cast saturates; the configuration refuses NaN and negatives.
        (self.idempotency_hours * 3_600_000.0).round() as u64
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
            cfg_mode: CfgMode::Auto,
            max_attempts: 3,
            max_interruptions: crate::jobs::lifecycle::DEFAULT_MAX_INTERRUPTIONS,
            memory_limit_mb: None,
            io_binding: None,
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
            .merge(
                Env::prefixed("REFRAIN_")
                    .ignore(&["device", "server", "api_key", "config"])
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| format!("invalid configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for (i, schedule) in self.schedules.iter().enumerate() {
            schedule
                .check(true)
                .map_err(|e| format!("schedules[{i}]: {e}"))?;
            if !names.insert(schedule.name.as_str()) {
                return Err(format!(
                    "schedules[{i}]: the name {} is used twice",
                    schedule.name
                ));
            }
        }
        if self.devices.is_empty() && self.queue.backend != Backend::Nats {
            return Err("devices must name at least one device (e.g. [\"cpu\"])".into());
        }
        if self.inference.max_attempts == 0 {
            return Err("inference.max_attempts must be at least 1".into());
        }
        if self.queue.backend == Backend::Nats {
            self.nats.validate()?;
        }
        if self.limits.max_upload_bytes == 0
            || self.limits.max_body_bytes < self.limits.max_upload_bytes
        {
            return Err("limits.max_body_bytes must be >= limits.max_upload_bytes > 0".into());
        }
        self.formats
            .validate()
            .map_err(|e| format!("formats: {e}"))?;
        if !(1..=refrain_model::MAX_VARIANTS as u32).contains(&self.limits.max_variants) {
            return Err(format!(
                "limits.max_variants must be 1 to {} (what a node generates in one batch)",
                refrain_model::MAX_VARIANTS
            ));
        }
        self.bots.validate()?;
        if !(self.limits.idempotency_hours.is_finite() && self.limits.idempotency_hours >= 0.0) {
            return Err("limits.idempotency_hours must be a number of hours, 0 or more".into());
        }
        if self.fetch.timeout_seconds == 0 {
            return Err("fetch.timeout_seconds must be at least 1".into());
        }
        Ok(())
    }

    /// The API key file of Refrain's own API (`refrain keys add`).
    pub fn api_keys_path(&self) -> PathBuf {
        self.data_dir.join("api-keys.json")
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
        assert_eq!(c.queue.backend, Backend::Embedded);
        let o = Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Overrides::default()
        };
        assert_eq!(Config::load(Some(&f), &o).unwrap().listen.port(), 0);
    }

    #[test]
    fn task_api_and_webhook_sections() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[task_api]\npublic_url = \"https://songs.example.com\"\n[task_api.limits]\n\
             per_minute = 20\n[webhooks]\nfirst_retry_ms = 100\n[fetch]\nallow = \
             [\"10.1.2.0/24\"]\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(c.task_api.limits.per_minute, 20);
        assert_eq!(c.task_api.limits.concurrent, 3);
        assert_eq!(c.webhooks.first_retry_ms, 100);
        assert_eq!(
            c.fetch.allow,
            vec!["10.1.2.0/24".parse::<ipnet::IpNet>().unwrap()]
        );
    }

    /// `config/default.toml` documents the defaults: loaded, it is exactly `Config::default()`,
    /// and it lists the per-key limits of the task and Riffusion APIs and the upload limits.
    /// `config/distributed.toml` loads too, with the same API sections.
    #[test]
    fn the_shipped_config_files_load_and_list_the_api_sections() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let default = root.join("config/default.toml");
        let text = std::fs::read_to_string(&default).unwrap();
        for section in [
            "[limits.uploads]",
            "[task_api]",
            "[task_api.limits]",
            "[riffusion_api.limits]",
        ] {
            assert!(text.contains(section), "default.toml lacks {section}");
        }
        let c = Config::load(Some(&default), &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(
            (c.riffusion_api.limits.concurrent, c.task_api.limits.per_day),
            (4, 100)
        );
        let distributed = root.join("config/distributed.toml");
        let d = Config::load(Some(&distributed), &Overrides::default()).unwrap();
        assert_eq!(d.queue.backend, Backend::Nats);
        assert_eq!(
            (&d.limits, &d.task_api, &d.riffusion_api),
            (&c.limits, &c.task_api, &c.riffusion_api)
        );
    }

    #[test]
    fn the_idempotency_window_takes_fractions_of_an_hour() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[limits]\nidempotency_hours = 0.001\n").unwrap();
        let c = Config::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(c.limits.idempotency_ms(), 3_600);
        assert_eq!(Config::default().limits.idempotency_ms(), 24 * 3_600_000);
        std::fs::write(&f, "[limits]\nidempotency_hours = -1\n").unwrap();
        let e = Config::load(Some(&f), &Overrides::default()).unwrap_err();
        assert!(e.contains("idempotency_hours"), "{e}");
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

    #[test]
    fn unknown_enum_values_name_the_key_and_the_choices() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[queue]\nbackend = \"kafka\"\n").unwrap();
        let e = Config::load(Some(&f), &Overrides::default()).unwrap_err();
        assert!(
            e.contains("backend")
                && e.contains("kafka")
                && e.contains("embedded")
                && e.contains("nats"),
            "{e}"
        );
        std::fs::write(&f, "[inference]\ncfg_mode = \"fast\"\n").unwrap();
        let e = Config::load(Some(&f), &Overrides::default()).unwrap_err();
        assert!(
            e.contains("cfg_mode") && e.contains("fast") && e.contains("separate"),
            "{e}"
        );
        std::fs::write(
            &f,
            "[queue]\nbackend = \"nats\"\n[inference]\ncfg_mode = \"batched\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(
            (c.queue.backend, c.inference.cfg_mode),
            (Backend::Nats, CfgMode::Batched)
        );
    }
}
