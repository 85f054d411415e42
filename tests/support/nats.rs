//! A private nats-server for the distributed deployment's tests: JetStream storing on disk in
//! the test directory, listening on 127.0.0.1 on a random port (read back from its ports
//! file), killed when dropped, and restartable on the same port and store (a server restart
//! under running jobs).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::log_file;

/// A nats-server with JetStream storing in `dir/js`.
pub struct NatsServer {
    binary: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
    jetstream: bool,
    pub port: u16,
}

impl NatsServer {
    /// Starts on a random port.
    pub fn start(binary: &Path, dir: &Path) -> NatsServer {
        Self::start_with(binary, dir, true)
    }

    /// Starts on a random port without JetStream (no `-js`): what a misconfigured server is.
    pub fn start_without_jetstream(binary: &Path, dir: &Path) -> NatsServer {
        Self::start_with(binary, dir, false)
    }

    fn start_with(binary: &Path, dir: &Path, jetstream: bool) -> NatsServer {
        std::fs::create_dir_all(dir).expect("nats dir");
        let mut server = NatsServer {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            child: None,
            jetstream,
            port: 0,
        };
        let child = server.spawn(None);
        let pid = child.id();
        server.child = Some(child);
        let ports = dir.join(format!(
            "{}_{pid}.ports",
            binary
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("nats-server")
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Ok(text) = std::fs::read_to_string(&ports) {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    if let Some(u) = v["nats"][0].as_str() {
                        break u.to_string();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not write {}",
                ports.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        server.port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port in the ports file");
        server.wait_listening();
        server
    }

    fn spawn(&self, port: Option<u16>) -> Child {
        let log = log_file(&self.dir.join("nats-server.log"));
        let port = port.map_or("-1".to_string(), |p| p.to_string());
        let mut cmd = Command::new(&self.binary);
        if self.jetstream {
            cmd.arg("-js").arg("-sd").arg(self.dir.join("js"));
        }
        cmd.args(["-a", "127.0.0.1", "-p", &port, "-m", "-1"])
            .arg("--ports_file_dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server starts")
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server does not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port with the same store.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(self.spawn(Some(self.port)));
        self.wait_listening();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
