//! Per-owner limits, enforced at admission under the admission lock: how many jobs an owner
//! may have queued or running at once (`limits.per_owner_active`) and submit per 24 hours
//! (`limits.per_owner_daily`). Both are off (0) by default; the anonymous owner of the
//! seed-000 API counts as one owner like any other.
//!
//! A front end may add a [`Quota`] to a request (the task API's per-key limits: 10 jobs a
//! minute, 3 at once, 100 a day by default); the stricter of it and the global limits applies.
//! Windows are sliding and counted from the store (jobs created, not requests refused), so they
//! hold across restarts, and a refusal says exactly when the oldest job in the window leaves it
//! (`Retry-After`).
//!
//! The counts cost no scan of the store: the owner's queued and running jobs are one counter
//! (kept in the same transaction as each state change, see `crate::store::counts`), and a
//! window reads the owner's index (`<owner>\0<created_ms>…`) backwards from now, stopping at
//! the limit's worth of jobs unless it refuses. Only when a limit is set.

use protocol::Owner;

use crate::config::LimitsConfig;
use crate::error::OrchestratorError;
use crate::store::{now_ms, JobStore};

const MINUTE_MS: u64 = 60 * 1000;
const DAY_MS: u64 = 24 * 3600 * 1000;

/// Limits a front end asks for one owner's requests (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quota {
    /// Jobs queued or running at once.
    pub concurrent: usize,
    /// Jobs created in any 60 seconds.
    pub per_minute: usize,
    /// Jobs created in any 24 hours.
    pub per_day: usize,
}

/// The smaller of two limits, where 0 means none.
fn stricter(a: usize, b: usize) -> usize {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.min(b),
    }
}

/// Refuses `adding` new jobs of `owner` (the jobs of one request, admitted together) when
/// they would go over a limit.
pub fn check_owner(
    store: &JobStore,
    limits: &LimitsConfig,
    owner: &Owner,
    quota: Option<&Quota>,
    adding: usize,
) -> Result<(), OrchestratorError> {
    let quota = quota.copied().unwrap_or_default();
    let active_limit = stricter(limits.per_owner_active, quota.concurrent);
    let daily_limit = stricter(limits.per_owner_daily, quota.per_day);
    let adding = adding.max(1);
    // What a request of several jobs adds to a refusal.
    let makes = if adding > 1 {
        format!(" and this request makes {adding}")
    } else {
        String::new()
    };
    if active_limit > 0 {
        let active = store.active_of(owner)?;
        if active + adding > active_limit {
            return Err(OrchestratorError::OwnerLimit {
                message: format!(
                    "{owner} already has {active} jobs queued or running (the limit is \
                     {active_limit}){makes}; wait for one to finish"
                ),
                retry_after: 30,
            });
        }
    }
    for (limit, window_ms, window) in [
        (quota.per_minute, MINUTE_MS, "minute"),
        (daily_limit, DAY_MS, "24 hours"),
    ] {
        if limit == 0 {
            continue;
        }
        if adding > limit {
            return Err(OrchestratorError::OwnerLimit {
                message: format!(
                    "this request makes {adding} jobs, more than {owner} may submit in any \
                     {window} (the limit is {limit})"
                ),
                retry_after: window_ms / 1000,
            });
        }
        let now = now_ms();
        // Newest first, at most `limit` of them (and the total, when there are that many).
        let (newest, total) =
            store.owner_created_since(owner, now.saturating_sub(window_ms), limit)?;
        if let Some(&nth) = newest.get(limit - adding) {
            // The window has room again once the job `limit - adding + 1` places from the
            // newest leaves it.
            let frees_at = nth + window_ms;
            let retry_after = frees_at.saturating_sub(now).div_ceil(1000).max(1);
            return Err(OrchestratorError::OwnerLimit {
                message: format!(
                    "{owner} submitted {total} jobs in the last {window} (the limit is \
                     {limit}){makes}; try again in {retry_after} s"
                ),
                retry_after,
            });
        }
    }
    Ok(())
}
