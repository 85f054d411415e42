//! `refrain node` processes of the distributed deployment: one inference node on the CPU with
//! the committed test bundle and one intra-op thread, pulling jobs from the test's
//! nats-server. A node can be killed (`kill -9`, the crash the redelivery tests need) and
//! started again under the same name; its log, `node-<name>.log`, collects every run.
//! Started only through [`super::TestApp`].

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::logs::{node_events, NodeLogEvent};
use super::process::{log_file, refrain_command, Proc};

/// A `refrain node` process; killed when dropped.
pub struct Node {
    pub name: String,
    pub proc: Proc,
    nats_url: String,
    vars: Vec<(String, String)>,
}

impl Node {
    /// `refrain node --nats URL --device cpu --bundle models/test-bundle --threads 1
    /// --name NAME` with the `REFRAIN_*` variables `vars`. Returns at once: the node announces
    /// itself when its bundle is loaded (see [`super::Api::wait_nodes`]).
    pub(super) fn start(
        dir: &Path,
        name: &str,
        nats_url: &str,
        vars: Vec<(String, String)>,
    ) -> Node {
        let mut node = Node {
            name: name.to_string(),
            proc: Proc::new_exited(log_path(dir, name)),
            nats_url: nats_url.to_string(),
            vars,
        };
        node.spawn();
        node
    }

    fn spawn(&mut self) {
        let child = refrain_command(&self.vars)
            .args(["node", "--nats", &self.nats_url])
            .args(["--device", "cpu", "--bundle", "models/test-bundle"])
            .args(["--threads", "1", "--name", &self.name])
            .stdout(Stdio::null())
            .stderr(log_file(&self.proc.log))
            .spawn()
            .expect("refrain node starts");
        let log = self.proc.log.clone();
        self.proc = Proc::new(child, log);
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// `kill -9` (if it still runs), then the node again under the same name.
    pub fn restart(&mut self) {
        self.proc.kill();
        self.spawn();
    }

    /// The log of every run so far.
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// What the worker loop's log lines say it ran, in order.
    pub fn log_events(&self) -> Vec<NodeLogEvent> {
        node_events(&self.log_text())
    }
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("node-{name}.log"))
}
