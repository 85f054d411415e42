//! `refrain backup`, the real binary, on the data folder of a real `refrain serve`: while the
//! service runs the backup is made by the service (sled lets one process open the store) and
//! moved to the destination; made the data folder again, it serves the same song byte for byte
//! and the same job record; a stopped service's folder is backed up directly; a destination
//! that holds files is refused. Skipped with a message without ONNX Runtime, except in CI.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use support::process::refrain_command;
use support::*;

fn backup(data: &Path, to: &Path, listen: &str) -> Output {
    refrain_command(&[])
        .arg("backup")
        .arg("--data-dir")
        .arg(data)
        .arg("--to")
        .arg(to)
        .arg("--listen")
        .arg(listen)
        .output()
        .expect("refrain runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_restored_backup_serves_the_same_song() {
    let Some(mut app) = TestApp::embedded().steps(2).start() else {
        return;
    };
    let api = app.api();
    let (id, url) = api.submit_prompt(95, 7);
    let Done::Wav(song) = api.wait(&url, Duration::from_secs(120)) else {
        panic!("the job failed");
    };
    let record = api.job(&id);
    assert_eq!(record["state"], "succeeded", "{record}");
    assert!(record["result"].is_object(), "{record}");
    let data = app.data_dir();
    let to = app.dir().join("backup");

    // While the service runs, the service makes the backup (sled keeps other processes out
    // of the store) and the command moves it to the destination.
    let listen = app.base().trim_start_matches("http://").to_string();
    let out = backup(&data, &to, &listen);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("backed up 1 job(s)") && text(&out).contains("running service"),
        "{}",
        text(&out)
    );
    assert!(to.join("BACKUP.json").is_file());
    assert!(to.join("jobs.sled").is_dir());
    // Nothing is left behind in the service's folder, and a backup never holds older ones.
    let left = std::fs::read_dir(data.join("backups")).unwrap().count();
    assert_eq!(left, 0);
    assert!(!to.join("backups").exists());

    // A stopped service's folder is backed up directly.
    assert!(app.server.terminate(Duration::from_secs(30)).is_some());
    let offline = app.dir().join("offline");
    let out = backup(&data, &offline, &listen);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("backed up 1 job(s)"), "{}", text(&out));

    // Restore: the backup becomes the data folder.
    std::fs::rename(&data, app.dir().join("data-lost")).unwrap();
    std::fs::rename(&to, &data).unwrap();
    app.server.restart();
    let api = app.api();
    let Done::Wav(restored) = api.wait(&url, Duration::from_secs(60)) else {
        panic!("the restored job is not a song");
    };
    assert!(restored == song, "the restored song differs");
    let again = api.job(&id);
    assert_eq!(again["state"], record["state"]);
    assert_eq!(again["result"], record["result"]);

    // A destination with files in it is refused.
    let busy = app.dir().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), b"mine").unwrap();
    assert!(app.server.terminate(Duration::from_secs(30)).is_some());
    let out = backup(&data, &busy, &listen);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    assert_eq!(std::fs::read(busy.join("keep.txt")).unwrap(), b"mine");
}
