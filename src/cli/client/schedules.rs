//! `refrain schedules`: the schedules of a Refrain server through its API
//! (`/api/v1/schedules`) — `list` (a table), `next [--count N] [NAME]` (the coming fire times,
//! in each schedule's zone) and `run NAME` (fire now).

use serde_json::Value;

use super::{Client, ServerArgs};

#[derive(Debug, clap::Args)]
pub struct SchedulesArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: SchedulesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SchedulesCommand {
    /// The schedules: name, expression, zone, state, fires, the next fire time.
    List,
    /// The next fire times of one schedule or of all, in each schedule's zone.
    Next {
        /// Only this schedule.
        name: Option<String>,
        /// How many fire times (1 to 100).
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
    /// Fire a schedule now (its jobs and its output folder are printed).
    Run { name: String },
}

/// A schedule name as a path segment (names are `a-z`, `0-9`, `-`, `_`).
fn segment(name: &str) -> anyhow::Result<&str> {
    if !refrain_orchestrator::schedules::spec::is_valid_name(name) {
        anyhow::bail!("{name:?} is not a schedule name (1 to 64 of a-z, 0-9, '-' and '_')");
    }
    Ok(name)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub fn run(args: SchedulesArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server)?;
    match args.command {
        SchedulesCommand::List => {
            let list = client.get_json("/api/v1/schedules?next=1")?;
            println!(
                "{:<24} {:<22} {:<18} {:<8} {:>6}  NEXT",
                "NAME", "CRON", "ZONE", "STATE", "FIRES"
            );
            for s in list.as_array().into_iter().flatten() {
                let state = if s["paused"] == Value::Bool(true) {
                    "paused"
                } else {
                    "active"
                };
                println!(
                    "{:<24} {:<22} {:<18} {:<8} {:>6}  {}",
                    text(&s["name"]),
                    text(&s["cron"]),
                    text(&s["timezone"]),
                    state,
                    text(&s["fires"]),
                    text(&s["next"][0])
                );
            }
        }
        SchedulesCommand::Next { name, count } => {
            let count = count.clamp(1, 100);
            let schedules =
                match name {
                    Some(n) => vec![client
                        .get_json(&format!("/api/v1/schedules/{}?next={count}", segment(&n)?))?],
                    None => client
                        .get_json(&format!("/api/v1/schedules?next={count}"))?
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                };
            for s in schedules {
                println!(
                    "{} ({} in {}):",
                    text(&s["name"]),
                    text(&s["cron"]),
                    text(&s["timezone"])
                );
                for t in s["next"].as_array().into_iter().flatten() {
                    println!("  {}", text(t));
                }
            }
        }
        SchedulesCommand::Run { name } => {
            let request = client.request(
                reqwest::Method::POST,
                &format!("/api/v1/schedules/{}/run", segment(&name)?),
            );
            let fired = client.json(client.send(request)?)?;
            println!(
                "{} fired at {}: {} job(s) in {}",
                text(&fired["schedule"]),
                text(&fired["fire_time"]),
                fired["jobs"].as_array().map_or(0, Vec::len),
                text(&fired["output_dir"])
            );
            for job in fired["jobs"].as_array().into_iter().flatten() {
                println!("  {}", text(job));
            }
        }
    }
    Ok(())
}
