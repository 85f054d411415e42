//! `refrain doctor`, the real binary: a healthy set-up (the committed test bundle, ONNX Runtime
//! from `.ort/`, a fresh data folder, a free port; with the NATS backend a real nats-server)
//! passes with exit status 0, and each broken set-up that can be made on one machine — ONNX
//! Runtime missing, a bundle without or with an invalid `bundle.toml`, a bundle file changed
//! after its `SHA256SUMS` was written, graphs that do not match the manifest (checksums
//! intact), a data folder that cannot be created, a listen port in use, a NATS URL nothing
//! answers on, a nats-server without JetStream, a configuration with an unknown key or an
//! invalid device, `cuda:0` with the CPU build of ONNX Runtime, an `nvidia-smi` (a stub on
//! PATH) that cannot reach the driver or lists too few GPUs — fails with exit status 1 on the
//! line of that check, and the line says what is wrong and how to fix it.
//!
//! Skipped with a message without ONNX Runtime (or nats-server, for the NATS case), except in
//! CI.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;

use support::process::refrain_command;
use support::*;

/// Runs `refrain doctor ARGS` from the workspace root.
fn doctor(args: &[&str]) -> Output {
    doctor_with(&[], args)
}

/// Runs `refrain doctor ARGS` with the environment variables `vars` added.
fn doctor_with(vars: &[(String, String)], args: &[&str]) -> Output {
    refrain_command(vars)
        .arg("doctor")
        .args(args)
        .output()
        .expect("refrain runs")
}

/// The report (stdout) and the error line (stderr), for assertion messages.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The report line of the check `name`.
fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(name)))
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{out}"))
}

/// [`healthy_flags`] with the configuration file `config`.
fn healthy_flags_with(dir: &TestDir, config: &Path) -> Vec<String> {
    let mut flags = healthy_flags(dir);
    flags.extend(["--config".into(), config.display().to_string()]);
    flags
}

/// A fresh data folder inside the test directory and a free loopback port: the flags that make
/// a healthy set-up of the default configuration.
fn healthy_flags(dir: &TestDir) -> Vec<String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    vec![
        "--data-dir".into(),
        dir.path().join("data").display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
    ]
}

fn args(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// Fails with status 1, the check `name` is `FAIL` and its line holds `why` and `fix`.
fn assert_fails(out: &Output, name: &str, why: &str, fix: &str) {
    let all = text(out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let l = line(&all, name);
    assert!(l.starts_with("FAIL"), "{l}\n{all}");
    assert!(l.contains(why), "`{why}` missing from: {l}");
    let fix_text = l.split(" — fix: ").nth(1).unwrap_or_default();
    assert!(fix_text.contains(fix), "fix `{fix}` missing from: {l}");
    assert!(all.contains("failed"), "{all}");
}

#[test]
fn a_healthy_setup_passes_every_check() {
    if !ort_available() {
        return;
    }
    let dir = TestDir::new();
    let out = doctor(&args(&healthy_flags(&dir)));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    for name in [
        "config",
        "onnx runtime",
        "providers",
        "gpus",
        "espeak-ng",
        "bundle",
        "checksums",
        "graphs",
        "data folder",
        "free space",
        "nats",
        "listen",
    ] {
        let l = line(&all, name);
        // Only what this machine may lack may warn: GPUs, the espeak-ng version, disk space.
        let may_warn = matches!(name, "gpus" | "espeak-ng" | "free space" | "providers");
        assert!(
            l.starts_with("ok") || (may_warn && l.starts_with("warn")),
            "{l}\n{all}"
        );
    }
    assert!(line(&all, "onnx runtime").contains("1.31.1"), "{all}");
    assert!(line(&all, "checksums").contains("15 file(s)"), "{all}");
    assert!(line(&all, "espeak-ng").contains("en-us"), "{all}");
    assert!(!all.contains("FAIL"), "{all}");
    // Nothing was created or left behind in the data folder's parent.
    assert!(!dir.path().join("data").exists());
}

#[test]
fn missing_onnx_runtime_fails_with_the_fetch_command() {
    let dir = TestDir::new();
    let mut flags = healthy_flags(&dir);
    let missing = dir.path().join("nowhere/libonnxruntime.so.1.31.1");
    flags.extend(["--ort-library".into(), missing.display().to_string()]);
    let out = doctor(&args(&flags));
    assert_fails(
        &out,
        "onnx runtime",
        "library not found",
        "tools/fetch-onnxruntime.sh",
    );
    // The graphs cannot be checked without it, and say so.
    assert!(line(&text(&out), "graphs").starts_with("FAIL"));
}

/// A copy of the test bundle in `dir`.
fn bundle_copy(dir: &Path) -> PathBuf {
    let src = workspace().join("models/test-bundle");
    let dst = dir.join("bundle");
    std::fs::create_dir_all(&dst).unwrap();
    copy_dir(&src, &dst);
    dst
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let p = entry.unwrap().path();
        let to = dst.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &to); // the Mandarin data folder
        } else {
            std::fs::copy(&p, to).unwrap();
        }
    }
}

#[test]
fn a_changed_bundle_file_fails_its_checksum() {
    if !ort_available() {
        return;
    }
    let dir = TestDir::new();
    let bundle = bundle_copy(dir.path());
    // The graph still loads: only the checksum can tell it is not the file that was shipped.
    let vocab = bundle.join("negative_style.f32");
    let mut bytes = std::fs::read(&vocab).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&vocab, bytes).unwrap();
    let mut flags = healthy_flags(&dir);
    flags.extend(["--bundle".into(), bundle.display().to_string()]);
    let out = doctor(&args(&flags));
    assert_fails(
        &out,
        "checksums",
        "negative_style.f32: SHA-256 is",
        "copy the bundle again",
    );
    assert!(
        line(&text(&out), "graphs").starts_with("ok"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_data_folder_that_cannot_be_created_fails() {
    let dir = TestDir::new();
    // Even root cannot create a folder inside a plain file.
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let mut flags = healthy_flags(&dir);
    flags[1] = file.join("data").display().to_string();
    let out = doctor(&args(&flags));
    assert_fails(
        &out,
        "data folder",
        "is not a folder",
        "a folder this user can write",
    );
}

#[test]
fn a_busy_listen_port_fails() {
    let dir = TestDir::new();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut flags = healthy_flags(&dir);
    flags[3] = busy.local_addr().unwrap().to_string();
    let out = doctor(&args(&flags));
    assert_fails(&out, "listen", "is in use", "--listen");
}

/// A configuration file for the NATS backend at `url`.
fn nats_config(dir: &Path, url: &str) -> PathBuf {
    let file = dir.join("nats.toml");
    std::fs::write(
        &file,
        format!("devices = []\n[queue]\nbackend = \"nats\"\n[nats]\nurl = \"{url}\"\n"),
    )
    .unwrap();
    file
}

#[test]
fn an_unreachable_nats_server_fails() {
    let dir = TestDir::new();
    // A loopback port nothing listens on, for the whole test.
    let (_refusing, port) = refusing_port();
    let config = nats_config(dir.path(), &format!("nats://127.0.0.1:{port}"));
    let flags = healthy_flags_with(&dir, &config);
    let out = doctor(&args(&flags));
    assert_fails(
        &out,
        "nats",
        &format!("127.0.0.1:{port}"),
        "nats-server -js",
    );
}

#[test]
fn a_reachable_nats_server_with_jetstream_passes() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    if !ort_available() {
        return;
    }
    let dir = TestDir::new();
    let nats = NatsServer::start(&binary, &dir.path().join("nats"));
    let config = nats_config(dir.path(), &nats.url());
    let flags = healthy_flags_with(&dir, &config);
    let out = doctor(&args(&flags));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let l = line(&all, "nats");
    assert!(
        l.starts_with("ok") && l.contains("JetStream enabled") && l.contains("nats-server 2."),
        "{l}"
    );
}

#[test]
fn a_bad_configuration_file_fails_and_names_the_key() {
    let dir = TestDir::new();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[queue]\ncapacty = 5\n").unwrap();
    let out = doctor(&["--config", &file.display().to_string()]);
    assert_fails(&out, "config", "capacty", "correct");
    assert!(text(&out).contains("the other checks need"));
    // A file that does not exist is named as such.
    let out = doctor(&[
        "--config",
        &dir.path().join("none.toml").display().to_string(),
    ]);
    assert_fails(&out, "config", "does not exist", "name an existing file");
}

#[test]
fn the_deployment_configurations_are_valid() {
    for file in [
        "deploy/config/refrain.toml",
        "deploy/config/distributed.toml",
    ] {
        // Their bundle and data paths are the installed ones, so only the config line counts.
        let out = doctor(&["--config", file]);
        let all = text(&out);
        assert!(line(&all, "config").starts_with("ok"), "{file}:\n{all}");
    }
}

#[test]
fn a_bundle_without_a_manifest_fails() {
    let dir = TestDir::new();
    let bundle = bundle_copy(dir.path());
    std::fs::remove_file(bundle.join("bundle.toml")).unwrap();
    let mut flags = healthy_flags(&dir);
    flags.extend(["--bundle".into(), bundle.display().to_string()]);
    let out = doctor(&args(&flags));
    assert_fails(
        &out,
        "bundle",
        "cannot read bundle manifest",
        "a bundle folder with bundle.toml",
    );
    assert!(line(&text(&out), "bundle").contains("bundle.toml"));
}

#[test]
fn an_invalid_bundle_manifest_fails_on_one_line() {
    let dir = TestDir::new();
    let bundle = bundle_copy(dir.path());
    // A manifest cut short: a TOML parse error, which spans several lines of its own.
    std::fs::write(bundle.join("bundle.toml"), "name = \"cut short\"\n").unwrap();
    let mut flags = healthy_flags(&dir);
    flags.extend(["--bundle".into(), bundle.display().to_string()]);
    let out = doctor(&args(&flags));
    assert_fails(
        &out,
        "bundle",
        "invalid bundle manifest",
        "correct bundle.toml",
    );
    let all = text(&out);
    let l = line(&all, "bundle");
    assert!(l.contains("missing field `version`"), "{l}");
    // Every line of the report is one check (the error's own lines are joined).
    for report_line in String::from_utf8_lossy(&out.stdout).lines() {
        assert!(
            ["ok ", "warn", "FAIL"]
                .iter()
                .any(|s| report_line.starts_with(s)),
            "not a check line: {report_line}\n{all}"
        );
    }
}

#[test]
fn graphs_that_do_not_match_the_manifest_fail_only_the_graph_check() {
    if !ort_available() {
        return;
    }
    let dir = TestDir::new();
    let bundle = bundle_copy(dir.path());
    // The VAE's decoder and encoder swapped, and SHA256SUMS swapped with them: every file has
    // its digest, so only the graphs' signatures can tell.
    let (dec, enc) = (
        bundle.join("vae_decoder.onnx"),
        bundle.join("vae_encoder.onnx"),
    );
    let tmp = bundle.join("swap.onnx");
    std::fs::rename(&dec, &tmp).unwrap();
    std::fs::rename(&enc, &dec).unwrap();
    std::fs::rename(&tmp, &enc).unwrap();
    let sums = bundle.join("SHA256SUMS");
    let swapped = std::fs::read_to_string(&sums)
        .unwrap()
        .replace("vae_decoder.onnx", "SWAP")
        .replace("vae_encoder.onnx", "vae_decoder.onnx")
        .replace("SWAP", "vae_encoder.onnx");
    std::fs::write(&sums, swapped).unwrap();
    let mut flags = healthy_flags(&dir);
    flags.extend(["--bundle".into(), bundle.display().to_string()]);
    let out = doctor(&args(&flags));
    assert_fails(
        &out,
        "graphs",
        "vae decoder: missing input",
        "export the bundle again",
    );
    let all = text(&out);
    for name in ["bundle", "checksums"] {
        assert!(line(&all, name).starts_with("ok"), "{all}");
    }
    let failing: Vec<&str> = all.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(failing.len(), 1, "{all}");
}

/// A configuration file with `devices = [DEVICES]` and the rest as config/default.toml's.
fn devices_config(dir: &Path, devices: &str) -> PathBuf {
    let text = std::fs::read_to_string(workspace().join("config/default.toml")).unwrap();
    let mut replaced = false;
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("devices") {
                replaced = true;
                format!("devices = [{devices}]\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(replaced, "config/default.toml has no devices line");
    let file = dir.join("devices.toml");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn an_invalid_device_fails_the_configuration() {
    let dir = TestDir::new();
    let config = devices_config(dir.path(), "\"tpu:0\"");
    let flags = healthy_flags_with(&dir, &config);
    let out = doctor(&args(&flags));
    assert_fails(&out, "config", "tpu:0", "\"cuda:N\"");
    assert!(text(&out).contains("the other checks need"));
}

#[test]
fn cuda_with_the_cpu_build_of_onnx_runtime_fails() {
    if !ort_available() {
        return;
    }
    let dir = TestDir::new();
    let config = devices_config(dir.path(), "\"cuda:0\"");
    let flags = healthy_flags_with(&dir, &config);
    let out = doctor(&args(&flags));
    let all = text(&out);
    if !line(&all, "providers").contains("not in this build") {
        eprintln!("skipped: the ONNX Runtime found here is the CUDA build\n{all}");
        return;
    }
    assert_fails(
        &out,
        "providers",
        "CUDA: not in this build of ONNX Runtime, but the configuration asks for cuda",
        "ORT_FLAVOUR=gpu tools/fetch-onnxruntime.sh",
    );
}

/// A folder holding an `nvidia-smi` that prints `stdout`, `stderr` and exits with `status`,
/// and the PATH that puts it first.
fn stub_nvidia_smi(dir: &Path, stdout: &str, stderr: &str, status: i32) -> (String, String) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("stub-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("nvidia-smi");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nprintf '%s' '{stdout}'\nprintf '%s' '{stderr}' >&2\nexit {status}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::var("PATH").unwrap_or_default();
    ("PATH".into(), format!("{}:{path}", bin.display()))
}

#[test]
fn nvidia_smi_is_read_for_the_gpu_line() {
    if !ort_available() {
        return;
    }
    let dir = TestDir::new();
    let one_gpu = stub_nvidia_smi(dir.path(), "0, NVIDIA Stub GPU, 81559, 1024\n", "", 0);
    // On the CPU: the GPU is listed with its memory; a warning at most (CPU build, GPU seen).
    let out = doctor_with(std::slice::from_ref(&one_gpu), &args(&healthy_flags(&dir)));
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        line(&all, "gpus").starts_with("ok")
            && line(&all, "gpus").contains("cuda:0 NVIDIA Stub GPU (1024 of 81559 MiB used)"),
        "{all}"
    );
    // A configured cuda:1 that nvidia-smi does not list.
    let config = devices_config(dir.path(), "\"cuda:1\"");
    let flags = healthy_flags_with(&dir, &config);
    let out = doctor_with(std::slice::from_ref(&one_gpu), &args(&flags));
    assert_fails(
        &out,
        "gpus",
        "asks for cuda:1, which is not there",
        "cuda:0 to cuda:0",
    );
}

#[test]
fn an_nvidia_driver_nvidia_smi_cannot_reach_fails_when_cuda_is_configured() {
    let dir = TestDir::new();
    let broken = stub_nvidia_smi(
        dir.path(),
        "",
        "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.",
        9,
    );
    // Without GPUs configured it is only a warning.
    let out = doctor_with(
        std::slice::from_ref(&broken),
        &args(
            &[
                healthy_flags(&dir),
                vec![
                    "--ort-library".into(),
                    "/nonexistent/libonnxruntime.so".into(),
                ],
            ]
            .concat(),
        ),
    );
    let all = text(&out);
    let l = line(&all, "gpus");
    assert!(
        l.starts_with("warn") && l.contains("could not communicate"),
        "{l}"
    );
    // With cuda:0 configured the service could not run: a failure naming the driver.
    let config = devices_config(dir.path(), "\"cuda:0\"");
    let flags = healthy_flags_with(&dir, &config);
    let out = doctor_with(std::slice::from_ref(&broken), &args(&flags));
    assert_fails(
        &out,
        "gpus",
        "nvidia-smi failed (exit status: 9): NVIDIA-SMI has failed",
        "check the NVIDIA driver",
    );
}

#[test]
fn a_nats_server_without_jetstream_fails() {
    let Some(binary) = nats_server_binary() else {
        return;
    };
    let dir = TestDir::new();
    let nats = NatsServer::start_without_jetstream(&binary, &dir.path().join("nats"));
    let config = nats_config(dir.path(), &nats.url());
    let flags = healthy_flags_with(&dir, &config);
    let out = doctor(&args(&flags));
    assert_fails(&out, "nats", "no JetStream", "nats-server -js");
    let l = line(&text(&out), "nats").to_string();
    assert!(
        l.contains(&nats.url()) && l.contains("nats-server 2."),
        "{l}"
    );
}
