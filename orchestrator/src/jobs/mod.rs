//! The job core every front end is a thin facade over.
//!
//! - [`lifecycle`]: the only code that changes a job's state; each change is one store
//!   transaction with its outbox event, then published.
//! - [`pace`]: run time per second of song, learnt from successful runs, for estimates.
//! - [`hub`]: in-process fan-out of those events, and [`hub::Subscription`], which resumes from
//!   any sequence number.
//!
//! Front ends (the DiffRhythm API, Refrain's own API, the bots, the scheduler) never touch the
//! store or the queue: they call `App` (`crate::service::App`), which calls these.

pub mod hub;
pub mod lifecycle;
pub mod limits;
pub mod pace;
pub mod results;

pub use hub::{Hub, Subscription};
pub use lifecycle::{Expect, Lifecycle, Pending, Retry};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use protocol::JobId;
use tokio_util::sync::CancellationToken;

/// The cancel tokens of the jobs running on this process's own nodes (embedded deployment):
/// cancelling a running job fires its token, and its node stops between two sampler steps.
#[derive(Clone, Default)]
pub struct RunningJobs {
    tokens: Arc<Mutex<HashMap<JobId, CancellationToken>>>,
}

impl RunningJobs {
    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, CancellationToken>> {
        // Single inserts and removes only: a poisoned map is still consistent.
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, id: &JobId, token: CancellationToken) {
        self.tokens().insert(id.clone(), token);
    }

    pub fn remove(&self, id: &JobId) {
        self.tokens().remove(id);
    }

    /// Fires the token of `id`; false if no node of this process runs it.
    pub fn cancel(&self, id: &JobId) -> bool {
        match self.tokens().get(id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }
}
