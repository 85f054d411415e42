//! The machine's checks of `refrain doctor`: ONNX Runtime and its execution providers, the
//! visible NVIDIA GPUs, espeak-ng.

use std::process::Command;

use refrain_inference::runtime::{library_candidates, Device, Runtime, RuntimeConfig, ORT_VERSION};
use refrain_model::bundle::Bundle;
use refrain_model::lyrics::g2p::espeak;
use refrain_orchestrator::config::Config;

use super::Check;

/// What `tools/fetch-onnxruntime.sh` is for.
const FETCH_CPU: &str = "run `tools/fetch-onnxruntime.sh` (it puts ONNX Runtime in .ort/lib/), \
or set ORT_DYLIB_PATH / ort_library to the full path of libonnxruntime.so.1.31.1";
const FETCH_GPU: &str =
    "run `ORT_FLAVOUR=gpu tools/fetch-onnxruntime.sh` (the CUDA build) and put \
the CUDA 13 and cuDNN 9 libraries on the library path";

/// The espeak-ng version whose phonemes the reference (and the lyrics parity test) used.
const REFERENCE_ESPEAK: &str = "1.51";
/// "hello world" as phonemizer gives it with espeak-ng 1.51, en-us.
const HELLO_WORLD: &str = "h_ə_l_ˈoʊ w_ˈɜː_l_d";

/// ONNX Runtime found and loaded (on the CPU), with its version.
pub fn onnx_runtime(config: &Config, report: &mut impl FnMut(Check)) -> Option<Runtime> {
    let name = "onnx runtime";
    let candidates = library_candidates(config.ort_library.as_deref());
    let Some(found) = candidates.iter().find(|p| p.is_file()) else {
        let looked = candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        report(Check::fail(
            name,
            format!("library not found (looked at: {looked})"),
            FETCH_CPU,
        ));
        return None;
    };
    let runtime = Runtime::init(RuntimeConfig {
        library: Some(found.clone()),
        device: Device::Cpu,
        intra_threads: Some(1),
        engine_cache: None,
    });
    match runtime {
        Ok(runtime) => {
            let info = runtime.info();
            let version = info.version.clone().unwrap_or_else(|| info.build.clone());
            if info.version.as_deref() == Some(ORT_VERSION) {
                report(Check::ok(
                    name,
                    format!("{version} from {}", info.library.display()),
                ));
            } else {
                report(Check::warn(
                    name,
                    format!(
                        "{version} from {} (Refrain is built for {ORT_VERSION})",
                        info.library.display()
                    ),
                    FETCH_CPU,
                ));
            }
            Some(runtime)
        }
        Err(e) => {
            report(Check::fail(
                name,
                format!("cannot load {}: {e}", found.display()),
                FETCH_CPU,
            ));
            None
        }
    }
}

/// CPU always; CUDA when built in, and then a session on every configured GPU (on the bundle's
/// smallest graph) to tell whether it really works there.
pub fn execution_providers(
    runtime: Option<&Runtime>,
    bundle: Option<&Bundle>,
    devices: &[Device],
    gpus: &Gpus,
    report: &mut impl FnMut(Check),
) {
    let name = "providers";
    let Some(runtime) = runtime else { return };
    let cuda_wanted: Vec<u32> = devices.iter().filter_map(|d| d.gpu()).collect();
    if !runtime.info().cuda_in_build {
        let detail = "CPU; CUDA: not in this build of ONNX Runtime";
        if !cuda_wanted.is_empty() {
            report(Check::fail(
                name,
                format!("{detail}, but the configuration asks for cuda"),
                FETCH_GPU,
            ));
        } else if gpus.count > 0 {
            report(Check::warn(
                name,
                format!("{detail} although {} GPU(s) are visible", gpus.count),
                FETCH_GPU,
            ));
        } else {
            report(Check::ok(name, detail));
        }
        return;
    }
    // Without a configured GPU, try the first visible one (informative only).
    let (tried, needed): (Vec<u32>, bool) = if cuda_wanted.is_empty() {
        (if gpus.count > 0 { vec![0] } else { vec![] }, false)
    } else {
        (cuda_wanted, true)
    };
    let smallest = bundle.and_then(|b| {
        b.files()
            .into_iter()
            .map(|f| b.file(&f))
            .filter(|f| f.extension().is_some_and(|e| e == "onnx"))
            .min_by_key(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(u64::MAX))
    });
    let mut usable = Vec::new();
    for ordinal in tried {
        let Some(graph) = &smallest else { break };
        let session = Runtime::init(RuntimeConfig {
            library: Some(runtime.library().to_path_buf()),
            device: Device::Cuda(ordinal),
            intra_threads: Some(1),
            engine_cache: None,
        })
        .and_then(|r| r.session(graph));
        match session {
            Ok(_) => usable.push(format!("cuda:{ordinal}")),
            Err(e) if needed => {
                return report(Check::fail(
                    name,
                    format!("CPU, CUDA built in, but not usable on cuda:{ordinal}: {e}"),
                    FETCH_GPU,
                ))
            }
            Err(e) => {
                return report(Check::warn(
                    name,
                    format!("CPU, CUDA built in, but not usable on cuda:{ordinal}: {e}"),
                    FETCH_GPU,
                ))
            }
        }
    }
    let cuda = if usable.is_empty() {
        "built in (no GPU to try it on)".to_string()
    } else {
        format!("usable on {}", usable.join(", "))
    };
    report(Check::ok(name, format!("CPU; CUDA {cuda}")));
}

/// The NVIDIA GPUs `nvidia-smi` lists, and the line that reports them.
#[derive(Debug, Clone)]
pub struct Gpus {
    pub count: usize,
    pub check: Check,
}

/// Asks `nvidia-smi` for every GPU's name and memory; none when it is not installed. When the
/// configuration runs on GPUs (`devices`), a driver `nvidia-smi` cannot talk to, or fewer GPUs
/// than a configured `cuda:N` needs, is a failure; otherwise only a warning.
pub fn gpus(devices: &[Device]) -> Gpus {
    let name = "gpus";
    let wanted: Vec<u32> = devices.iter().filter_map(|d| d.gpu()).collect();
    let driver_fix = "check the NVIDIA driver (`nvidia-smi` must list the GPUs; reinstall or \
                      load the driver matching the kernel, then reboot if it says so)";
    let out = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,memory.total,memory.used",
            "--format=csv,noheader,nounits",
        ])
        .output();
    let out = match out {
        // The CUDA check (providers) still tells whether the GPUs work without nvidia-smi.
        Err(_) if !wanted.is_empty() => {
            return Gpus {
                count: 0,
                check: Check::warn(
                    name,
                    "unknown (nvidia-smi not found) although the configuration asks for cuda",
                    "install the NVIDIA driver's utilities (nvidia-smi) to list the GPUs",
                ),
            }
        }
        Err(_) => {
            return Gpus {
                count: 0,
                check: Check::ok(name, "none (nvidia-smi not found; CPU only)"),
            }
        }
        Ok(o) if !o.status.success() => {
            let mut why = String::from_utf8_lossy(&o.stderr).trim().to_string();
            if why.is_empty() {
                why = String::from_utf8_lossy(&o.stdout).trim().to_string();
            }
            let detail = format!("nvidia-smi failed ({}): {why}", o.status);
            let check = if wanted.is_empty() {
                Check::warn(name, detail, driver_fix)
            } else {
                Check::fail(
                    name,
                    format!("{detail}; the configuration asks for cuda"),
                    driver_fix,
                )
            };
            return Gpus { count: 0, check };
        }
        Ok(o) => String::from_utf8_lossy(&o.stdout).to_string(),
    };
    let listed: Vec<String> = out
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let [index, model, total, used] = f.as_slice() else {
                return None;
            };
            Some(format!("cuda:{index} {model} ({used} of {total} MiB used)"))
        })
        .collect();
    let shown = if listed.is_empty() {
        "none (nvidia-smi lists no GPU)".to_string()
    } else {
        listed.join("; ")
    };
    let missing: Vec<String> = wanted
        .iter()
        .filter(|&&n| n as usize >= listed.len())
        .map(|n| format!("cuda:{n}"))
        .collect();
    let check = if missing.is_empty() {
        Check::ok(name, shown)
    } else {
        Check::fail(
            name,
            format!(
                "{shown}; the configuration asks for {}, which is not there",
                missing.join(", ")
            ),
            format!(
                "{}check the driver and that the GPUs are visible here (CUDA_VISIBLE_DEVICES, \
                 the container's --gpus)",
                match listed.len() {
                    0 => "use devices = [\"cpu\"], or ".to_string(),
                    n => format!(
                        "list only the GPUs nvidia-smi shows (cuda:0 to cuda:{}), or ",
                        n - 1
                    ),
                }
            ),
        )
    };
    Gpus {
        count: listed.len(),
        check,
    }
}

/// espeak-ng loads, has the en-us voice, and phonemises like the reference's version.
pub fn espeak() -> Check {
    let name = "espeak-ng";
    let install = "`apt-get install libespeak-ng1 espeak-ng-data` (tools/setup.sh does)";
    let version = match espeak::version() {
        Ok(v) => v,
        Err(e) => return Check::fail(name, e.to_string(), install),
    };
    let phonemes = match espeak::text_to_phonemes("hello world") {
        Ok(p) => p,
        Err(e) => return Check::fail(name, format!("{version}: {e}"), install),
    };
    let base = version.split_whitespace().next().unwrap_or(&version);
    let detail = format!(
        "{version}, voice {}: \"hello world\" is {phonemes}",
        espeak::LANGUAGE
    );
    if phonemes != HELLO_WORLD {
        Check::warn(
            name,
            format!("{detail}, not {HELLO_WORLD} as with espeak-ng {REFERENCE_ESPEAK}"),
            format!("use espeak-ng {REFERENCE_ESPEAK} (Debian 12, Ubuntu 24.04) for the reference's phonemes"),
        )
    } else if !base.starts_with(REFERENCE_ESPEAK) {
        Check::warn(
            name,
            format!("{detail}; the reference's phonemes come from {REFERENCE_ESPEAK}, some words may differ"),
            format!("use espeak-ng {REFERENCE_ESPEAK} (Debian 12, Ubuntu 24.04) for the reference's phonemes"),
        )
    } else {
        Check::ok(name, detail)
    }
}
