//! What a node's log says it ran: the worker loop's `job started` / `job succeeded` / … lines
//! (of a `refrain node` log, or of `refrain serve`'s log for its in-process node).
//! A job's event stream ([`super::events`]) tells what happened to the job; it does not tell
//! which node ran it, nor that a node ran one job at a time (or that a crashed node's attempt
//! really ran), so for those checks — and while the orchestrator is down and no stream can be
//! read — the tests read the nodes' logs, and only then.

/// What a node's log says it did, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeLogEvent {
    Started { job: String, attempt: u32 },
    Finished { job: String, how: String },
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split_whitespace().next()
}

/// The worker loop's job lines of a node log.
pub fn node_events(log: &str) -> Vec<NodeLogEvent> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(job) = field(line, "job").map(str::to_string) else {
            continue;
        };
        if line.contains(" job started ") {
            let attempt = field(line, "attempt")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            out.push(NodeLogEvent::Started { job, attempt });
        } else {
            for (needle, how) in [
                (" job succeeded ", "succeeded"),
                (" job failed: invalid input ", "invalid"),
                (" job attempt failed ", "retry"),
                (" job interrupted", "interrupted"),
                (" job cancelled", "cancelled"),
            ] {
                if line.contains(needle) && line.contains("refrain_inference::worker") {
                    out.push(NodeLogEvent::Finished {
                        job: job.clone(),
                        how: how.into(),
                    });
                }
            }
        }
    }
    out
}

/// Checks that a node ran one job at a time; returns the (job, attempt) pairs it started.
pub fn one_at_a_time(name: &str, events: &[NodeLogEvent]) -> Vec<(String, u32)> {
    let mut running: Option<&str> = None;
    let mut started = Vec::new();
    for e in events {
        match e {
            NodeLogEvent::Started { job, attempt } => {
                assert!(
                    running.is_none(),
                    "node {name} started {job} while running {running:?}: {events:?}"
                );
                running = Some(job);
                started.push((job.clone(), *attempt));
            }
            NodeLogEvent::Finished { job, .. } => {
                assert_eq!(
                    running,
                    Some(job.as_str()),
                    "node {name} finished a job it was not running: {events:?}"
                );
                running = None;
            }
        }
    }
    started
}
