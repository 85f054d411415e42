//! ONNX Runtime setup: finding the shared library, creating the one process-wide environment,
//! and building sessions on the execution provider a node is configured for.
//!
//! `ort` is built with `load-dynamic`, so the binary carries no ONNX Runtime; it loads
//! `libonnxruntime.so` (1.31.x) at run time from, in order: the configured path, the
//! `ORT_DYLIB_PATH` environment variable, or `.ort/lib/` under the working directory or next to
//! the executable (where `tools/fetch-onnxruntime.sh` puts it). When none is found the error says
//! exactly what to run. CUDA is only used when asked for, and then with `error_on_failure`: a GPU
//! node never falls back to the CPU silently.
//!
//! `tensorrt:N` runs the graphs through the TensorRT execution provider on GPU N, with the CUDA
//! provider for what TensorRT does not take (both `error_on_failure`). TensorRT builds an engine
//! per graph and input shape the first time, which takes minutes for a full-size DiT; engines
//! are cached in [`RuntimeConfig::engine_cache`] so a restart reuses them. TensorRT keeps each
//! graph's precision (no `trt_fp16_enable`): an f32 bundle stays f32, the f16 graphs compute in
//! f16, as on CUDA. Not measured yet: no GPU was available when this was written
//! (`tools/gpu-check.sh` runs it).
//!
//! [`DeviceSettings`] holds what a node may set about its device's memory and data movement:
//! a memory limit ([`crate::memory`]) and whether the DiT runs through IO binding
//! (`crate::sampler`). They are given with [`Runtime::init_with`]; [`Runtime::init`] takes the
//! defaults (no limit, IO binding on CUDA only).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use thiserror::Error;

/// The ONNX Runtime version this build is written against (`ort` feature `api-31`).
pub const ORT_VERSION: &str = "1.31.1";

/// What to run when the library is missing.
pub const FETCH_HINT: &str =
    "run `tools/fetch-onnxruntime.sh` (it puts ONNX Runtime in .ort/lib/), \
or set ORT_DYLIB_PATH to the full path of libonnxruntime.so.1.31.1";

/// Errors of the runtime layer.
#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found (looked at: {searched}); {hint}", hint = FETCH_HINT)]
    LibraryNotFound { searched: String },
    #[error("cannot load ONNX Runtime from {path}: {reason}; {hint}", hint = FETCH_HINT)]
    LibraryLoad { path: String, reason: String },
    #[error("ONNX Runtime was already initialised from {loaded}, cannot switch to {requested}")]
    AlreadyLoaded { loaded: String, requested: String },
    #[error("invalid device {0:?}: expected `cpu`, `cuda`, `cuda:N`, `tensorrt` or `tensorrt:N`")]
    BadDevice(String),
    #[error("cannot create a session for {file} on {device}: {source}")]
    Session {
        file: String,
        device: Device,
        #[source]
        source: ort::Error,
    },
    #[error(
        "cannot create a session for {file} on {device}: {source}; CUDA needs the GPU build of \
         ONNX Runtime (`ORT_FLAVOUR=gpu tools/fetch-onnxruntime.sh`) and the CUDA 13 and cuDNN 9 \
         libraries on the library path"
    )]
    Cuda {
        file: String,
        device: Device,
        #[source]
        source: ort::Error,
    },
    #[error(
        "cannot create a session for {file} on {device}: {source}; TensorRT needs the GPU build \
         of ONNX Runtime (`ORT_FLAVOUR=gpu tools/fetch-onnxruntime.sh`), the CUDA 13 and cuDNN 9 \
         libraries and TensorRT 10 (libnvinfer.so.10) on the library path"
    )]
    TensorRt {
        file: String,
        device: Device,
        #[source]
        source: ort::Error,
    },
    #[error("ONNX Runtime environment: {0}")]
    Environment(ort::Error),
    #[error("memory limit: {0}")]
    MemoryLimit(String),
}

/// The execution device of one inference node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU execution provider (the default).
    #[default]
    Cpu,
    /// The CUDA execution provider on the given GPU ordinal.
    Cuda(u32),
    /// The TensorRT execution provider on the given GPU ordinal, with CUDA for the rest.
    TensorRt(u32),
}

impl Device {
    /// The GPU ordinal, for CUDA and TensorRT.
    pub fn gpu(self) -> Option<u32> {
        match self {
            Device::Cpu => None,
            Device::Cuda(n) | Device::TensorRt(n) => Some(n),
        }
    }
}

impl FromStr for Device {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ordinal = |n: &str| n.parse::<u32>().ok();
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            "tensorrt" => Ok(Device::TensorRt(0)),
            other => {
                if let Some(n) = other.strip_prefix("cuda:").and_then(ordinal) {
                    Ok(Device::Cuda(n))
                } else if let Some(n) = other.strip_prefix("tensorrt:").and_then(ordinal) {
                    Ok(Device::TensorRt(n))
                } else {
                    Err(RuntimeError::BadDevice(s.to_string()))
                }
            }
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
            Device::TensorRt(n) => write!(f, "tensorrt:{n}"),
        }
    }
}

/// How sessions are created on one node.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// Explicit path of `libonnxruntime.so`; `None` searches as the module doc says.
    pub library: Option<PathBuf>,
    /// Where the sessions run.
    pub device: Device,
    /// Intra-op threads per session; `None` lets ONNX Runtime choose (all cores).
    pub intra_threads: Option<usize>,
    /// Where TensorRT keeps its engines (`tensorrt:N` only); `None`: `refrain-tensorrt` in the
    /// system's temporary folder.
    pub engine_cache: Option<PathBuf>,
}

/// A node's settings for its device's memory and data movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceSettings {
    /// Bytes ONNX Runtime's arena may hold: the CUDA provider's `gpu_mem_limit` on a GPU, a
    /// process-wide cap of a shared CPU arena on the CPU ([`crate::memory`]). `None`: no limit.
    pub memory_limit: Option<u64>,
    /// Whether the DiT runs through IO binding: inputs that do not change between sampler
    /// steps bound once (on the device), `v` into a buffer allocated once. `None`: on CUDA
    /// only. The numbers are the same either way.
    pub io_binding: Option<bool>,
}

/// The process-wide ONNX Runtime environment (ONNX Runtime allows exactly one).
#[derive(Debug, Clone)]
pub struct Runtime {
    env: &'static Environment,
    library: &'static Path,
    config: RuntimeConfig,
    settings: DeviceSettings,
}

/// The loaded ONNX Runtime, as [`Runtime::info`] describes it.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub library: PathBuf,
    /// e.g. `1.31.1`, when the library's file name carries it.
    pub version: Option<String>,
    /// ONNX Runtime's build information string.
    pub build: String,
    /// Whether the CUDA execution provider is compiled in (the GPU build); whether it works on
    /// a given GPU only a session on it tells.
    pub cuda_in_build: bool,
}

struct Loaded {
    env: Environment,
    library: PathBuf,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Candidate library locations, in search order.
pub fn library_candidates(configured: Option<&Path>) -> Vec<PathBuf> {
    if let Some(p) = configured {
        return vec![p.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    let file = format!("libonnxruntime.so.{ORT_VERSION}");
    if let Ok(cwd) = std::env::current_dir() {
        out.push(cwd.join(".ort/lib").join(&file));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/{debug,release}/refrain -> the workspace root is two or three levels up.
        for dir in exe.ancestors().skip(1).take(4) {
            out.push(dir.join(".ort/lib").join(&file));
        }
    }
    out.dedup();
    out
}

impl Runtime {
    /// Loads ONNX Runtime (once per process) and returns a handle configured for `config.device`
    /// with the default [`DeviceSettings`].
    pub fn init(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        Runtime::init_with(config, DeviceSettings::default())
    }

    /// [`Runtime::init`] with a node's [`DeviceSettings`]. A CPU memory limit registers the
    /// shared CPU arena in the environment (once per process: every limited CPU runtime of a
    /// process must use the same limit).
    pub fn init_with(
        config: RuntimeConfig,
        settings: DeviceSettings,
    ) -> Result<Runtime, RuntimeError> {
        let runtime = Runtime::load(config, settings)?;
        if let (Device::Cpu, Some(limit)) = (runtime.config.device, settings.memory_limit) {
            crate::memory::register_cpu_arena(runtime.env, limit)
                .map_err(RuntimeError::MemoryLimit)?;
        }
        Ok(runtime)
    }

    fn load(config: RuntimeConfig, settings: DeviceSettings) -> Result<Runtime, RuntimeError> {
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        let loaded = match LOADED.get() {
            Some(l) => {
                if let Some(req) = &config.library {
                    if req != &l.library {
                        return Err(RuntimeError::AlreadyLoaded {
                            loaded: l.library.display().to_string(),
                            requested: req.display().to_string(),
                        });
                    }
                }
                l
            }
            None => {
                let candidates = library_candidates(config.library.as_deref());
                let path = candidates
                    .iter()
                    .find(|p| p.is_file())
                    .cloned()
                    .ok_or_else(|| RuntimeError::LibraryNotFound {
                        searched: candidates
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
                let builder = ort::init_from(&path).map_err(|e| RuntimeError::LibraryLoad {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                let env = builder
                    .with_name("refrain")
                    .with_telemetry(false)
                    .build()
                    .map_err(RuntimeError::Environment)?;
                tracing::info!(library = %path.display(), "ONNX Runtime loaded");
                // Only reached once: the INIT lock is held and LOADED was empty.
                let _ = LOADED.set(Loaded { env, library: path });
                LOADED.get().expect("just set")
            }
        };
        Ok(Runtime {
            env: &loaded.env,
            library: &loaded.library,
            config,
            settings,
        })
    }

    /// The node's device settings.
    pub fn settings(&self) -> DeviceSettings {
        self.settings
    }

    /// The device the DiT binds its inputs and output on, when IO binding is on
    /// ([`DeviceSettings::io_binding`]).
    pub fn io_binding(&self) -> Option<Device> {
        let on = self
            .settings
            .io_binding
            .unwrap_or(self.config.device.gpu().is_some());
        on.then_some(self.config.device)
    }

    /// The library this process loaded.
    pub fn library(&self) -> &Path {
        self.library
    }

    /// The device sessions are created on.
    pub fn device(&self) -> Device {
        self.config.device
    }

    /// What the loaded library is: its version and whether it was built with the CUDA
    /// execution provider (`refrain doctor`). The version comes from the library's file name
    /// (symbolic links followed: `libonnxruntime.so.1.31.1`), as the wheels and release archives
    /// name it; `ort` has already refused a library older than 1.31 when it loaded it.
    pub fn info(&self) -> RuntimeInfo {
        use ort::ep::ExecutionProvider;
        let build = ort::info().to_string();
        let real = std::fs::canonicalize(self.library).unwrap_or_else(|_| self.library.into());
        let version = real
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split_once(".so."))
            .map(|(_, v)| v.to_string())
            .filter(|v| v.split('.').all(|p| p.parse::<u32>().is_ok()));
        RuntimeInfo {
            library: self.library.to_path_buf(),
            version,
            build,
            cuda_in_build: ort::ep::CUDA::is_available().unwrap_or(false),
        }
    }

    /// Creates a session for one graph file on this node's device.
    pub fn session(&self, file: &Path) -> Result<Session, RuntimeError> {
        let name = file.display().to_string();
        self.builder(&name)?
            .commit_from_file(file)
            .map_err(|source| self.device_error(&name, source))
    }

    /// Creates a session for a graph built in memory (`ort::editor`) on this node's device;
    /// `name` stands for it in errors.
    pub fn session_from_model(
        &self,
        name: &str,
        model: ort::editor::Model,
    ) -> Result<Session, RuntimeError> {
        let builder = self.builder(name)?;
        model
            .into_session(&builder)
            .map_err(|source| self.device_error(name, source))
    }

    /// A session builder with this node's threads, memory settings and execution providers.
    fn builder(&self, name: &str) -> Result<SessionBuilder, RuntimeError> {
        let err = |source| RuntimeError::Session {
            file: name.to_string(),
            device: self.config.device,
            source,
        };
        let mut builder = Session::builder(self.env)
            .map_err(err)?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| err(e.into()))?;
        if let Some(n) = self.config.intra_threads {
            builder = builder.with_intra_threads(n).map_err(|e| err(e.into()))?;
        }
        if let (Device::Cpu, Some(_)) = (self.config.device, self.settings.memory_limit) {
            // The arena registered by `init_with`, shared and capped.
            builder = builder.with_env_allocators().map_err(|e| err(e.into()))?;
        }
        if let Some(ordinal) = self.config.device.gpu() {
            let gpu_err = |source: ort::Error| self.device_error(name, source);
            let mut cuda = ort::ep::CUDA::default().with_device_id(ordinal as i32);
            if let Some(limit) = self.settings.memory_limit {
                // Grow by what is asked, so the limit is what it says.
                cuda = cuda
                    .with_memory_limit(limit as usize)
                    .with_arena_extend_strategy(ort::ep::ArenaExtendStrategy::SameAsRequested);
            }
            let cuda = cuda.build().error_on_failure();
            let providers = match self.config.device {
                Device::TensorRt(_) => {
                    let cache = self
                        .config
                        .engine_cache
                        .clone()
                        .unwrap_or_else(|| std::env::temp_dir().join("refrain-tensorrt"));
                    std::fs::create_dir_all(&cache).map_err(|e| {
                        gpu_err(ort::Error::new(format!(
                            "cannot create the TensorRT engine cache {}: {e}",
                            cache.display()
                        )))
                    })?;
                    let tensorrt = ort::ep::TensorRT::default()
                        .with_device_id(ordinal as i32)
                        .with_engine_cache(true)
                        .with_engine_cache_path(cache.display())
                        .with_timing_cache(true)
                        .with_timing_cache_path(cache.display())
                        .build()
                        .error_on_failure();
                    vec![tensorrt, cuda]
                }
                _ => vec![cuda],
            };
            builder = builder
                .with_execution_providers(providers)
                .map_err(|e| gpu_err(e.into()))?;
        }
        Ok(builder)
    }

    /// A session error on this node's device, with what a GPU device needs installed.
    fn device_error(&self, name: &str, source: ort::Error) -> RuntimeError {
        let (file, device) = (name.to_string(), self.config.device);
        match device {
            Device::Cpu => RuntimeError::Session {
                file,
                device,
                source,
            },
            Device::Cuda(_) => RuntimeError::Cuda {
                file,
                device,
                source,
            },
            Device::TensorRt(_) => RuntimeError::TensorRt {
                file,
                device,
                source,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda(0));
        assert_eq!("cuda:3".parse::<Device>().unwrap(), Device::Cuda(3));
        assert_eq!("tensorrt".parse::<Device>().unwrap(), Device::TensorRt(0));
        assert_eq!("tensorrt:2".parse::<Device>().unwrap(), Device::TensorRt(2));
        for d in ["cpu", "cuda:1", "tensorrt:2"] {
            assert_eq!(d.parse::<Device>().unwrap().to_string(), d);
        }
        assert_eq!(Device::TensorRt(2).gpu(), Some(2));
        assert_eq!(Device::Cpu.gpu(), None);
        for bad in [
            "gpu",
            "cuda:",
            "cuda:x",
            "cuda:-1",
            "",
            "tensorrt:",
            "trt:0",
        ] {
            let e = bad.parse::<Device>().unwrap_err().to_string();
            assert!(e.contains("invalid device"), "{e}");
        }
    }

    #[test]
    fn configured_path_is_the_only_candidate() {
        let p = Path::new("/nowhere/libonnxruntime.so");
        assert_eq!(library_candidates(Some(p)), vec![p.to_path_buf()]);
    }
}
