//! Per-owner limits, enforced at admission under the admission lock: how many jobs an owner
//! may have queued or running at once (`limits.per_owner_active`) and submit per 24 hours
//! (`limits.per_owner_daily`). Both are off (0) by default; the anonymous owner of the
//! seed-000 API counts as one owner like any other.
//!
//! The counts read the records of the owner's active jobs (the state index) and of the jobs
//! created in the last 24 hours (the creation index), so they cost time in proportion to those
//! jobs, and only when a limit is set.

use protocol::{JobState, Owner};

use crate::config::LimitsConfig;
use crate::error::OrchestratorError;
use crate::store::{now_ms, JobStore};

const DAY_MS: u64 = 24 * 3600 * 1000;

/// Refuses a new job of `owner` when it would go over a limit.
pub fn check_owner(
    store: &JobStore,
    limits: &LimitsConfig,
    owner: &Owner,
) -> Result<(), OrchestratorError> {
    if limits.per_owner_active > 0 {
        let mut active = 0;
        for state in [JobState::Queued, JobState::Running] {
            for id in store.ids_in_state(state)? {
                if store.get(&id)?.is_some_and(|r| &r.owner == owner) {
                    active += 1;
                }
            }
        }
        if active >= limits.per_owner_active {
            return Err(OrchestratorError::OwnerLimit {
                message: format!(
                    "{owner} already has {active} jobs queued or running (the limit is {}); \
                     wait for one to finish",
                    limits.per_owner_active
                ),
                retry_after: 30,
            });
        }
    }
    if limits.per_owner_daily > 0 {
        let since = now_ms().saturating_sub(DAY_MS);
        let today = store
            .created_since(since)?
            .into_iter()
            .filter(|r| &r.owner == owner)
            .count();
        if today >= limits.per_owner_daily {
            return Err(OrchestratorError::OwnerLimit {
                message: format!(
                    "{owner} submitted {today} jobs in the last 24 hours (the limit is {})",
                    limits.per_owner_daily
                ),
                retry_after: 3600,
            });
        }
    }
    Ok(())
}
