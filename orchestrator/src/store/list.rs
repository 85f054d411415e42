//! Reading jobs in creation order: newest first, a page at a time, for Refrain's API
//! (`GET /api/v1/jobs`, [`JobStore::list`]). Pages walk the creation index (`<created_ms
//! BE><id>`) backwards from a cursor — the index key of the last job of the previous page,
//! hex-encoded — so a page is stable while new jobs arrive. A page filtered by state walks that
//! state's index (`<state>/<created_ms BE>/<id>`) instead, and one filtered by source (and
//! maybe state) the lookup index's range of that source (and state) (`s<source>/<state or
//! *>/<created_ms BE><id>`, see [`super::lookup`]), so a page reads only the jobs it returns.

use protocol::{JobRecord, JobState, Source};

use super::{keys, lookup, JobStore, StoreError, BY_CREATED, BY_STATE, LOOKUP};

/// Which jobs a listing shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListFilter {
    pub state: Option<JobState>,
    pub source: Option<Source>,
}

/// One page: the jobs, and the cursor of the next page if there may be one.
#[derive(Debug)]
pub struct Page {
    pub jobs: Vec<JobRecord>,
    pub next_cursor: Option<String>,
}

/// Why a cursor was refused.
#[derive(Debug, thiserror::Error)]
#[error("not a cursor of this server")]
pub struct BadCursor;

impl JobStore {
    /// Up to `limit` jobs created before `cursor` (newest first) that pass `filter`.
    pub fn list(
        &self,
        filter: ListFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Result<Page, BadCursor>, StoreError> {
        let end = match cursor {
            None => None,
            Some(c) => match decode_cursor(c) {
                Some(key) => Some(key),
                None => return Ok(Err(BadCursor)),
            },
        };
        // The index that holds exactly the jobs of the filter. The state index's keys are
        // `<state>/` + the creation key's time + `/` + id; the others' are a prefix + the
        // creation key; so the cursor (a creation key) converts both ways.
        let (tree, tree_name, prefix, slash) = match (filter.source, filter.state) {
            (Some(source), state) => (
                &self.lookup,
                LOOKUP,
                lookup::source_prefix(source, state),
                false,
            ),
            (None, Some(state)) => (&self.by_state, BY_STATE, keys::state_prefix(state), true),
            (None, None) => (&self.by_created, BY_CREATED, Vec::new(), false),
        };
        let to_tree_key = |created_key: &[u8]| -> Vec<u8> {
            let mut k = prefix.clone();
            if slash && created_key.len() > 8 {
                k.extend_from_slice(&created_key[..8]);
                k.push(b'/');
                k.extend_from_slice(&created_key[8..]);
            } else {
                k.extend_from_slice(created_key);
            }
            k
        };
        let to_cursor_key = |tree_key: &[u8]| -> Vec<u8> {
            let rest = &tree_key[prefix.len().min(tree_key.len())..];
            if slash && rest.len() > 9 {
                [&rest[..8], &rest[9..]].concat()
            } else {
                rest.to_vec()
            }
        };
        let range = match &end {
            Some(end) => tree.range(prefix.clone()..to_tree_key(end)),
            None => tree.range(prefix.clone()..keys::prefix_end(&prefix)),
        };
        let mut jobs = Vec::new();
        let mut last_key = None;
        for item in range.rev() {
            let (key, value) = item?;
            let id = keys::id_value(tree_name, &key, &value)?;
            let Some(record) = self.get(&id)? else {
                continue; // deleted between the index read and the record read
            };
            if filter.state.is_some_and(|s| s != record.state)
                || filter.source.is_some_and(|s| s != record.source)
            {
                continue;
            }
            jobs.push(record);
            if jobs.len() == limit {
                last_key = Some(to_cursor_key(&key));
                break;
            }
        }
        Ok(Ok(Page {
            jobs,
            next_cursor: last_key.map(|k| encode_cursor(&k)),
        }))
    }
}

fn encode_cursor(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Option<Vec<u8>> {
    if !cursor.len().is_multiple_of(2) || cursor.len() > 200 {
        return None;
    }
    (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::record_at;
    use super::*;

    #[tokio::test]
    async fn pages_newest_first_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("db")).unwrap();
        let mut ids = Vec::new();
        for t in 1..=5u64 {
            let mut r = record_at(t * 1000, None);
            if t == 3 {
                r.source = Source::Discord;
            }
            store.insert(&mut r, None).await.unwrap();
            ids.push(r.id);
        }
        let all = ListFilter::default();
        let page = store.list(all, None, 2).unwrap().unwrap();
        let got: Vec<_> = page.jobs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(got, [ids[4].clone(), ids[3].clone()]);
        let page2 = store
            .list(all, page.next_cursor.as_deref(), 2)
            .unwrap()
            .unwrap();
        let got: Vec<_> = page2.jobs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(got, [ids[2].clone(), ids[1].clone()]);
        let page3 = store
            .list(all, page2.next_cursor.as_deref(), 2)
            .unwrap()
            .unwrap();
        assert_eq!(page3.jobs.len(), 1);
        assert!(page3.next_cursor.is_none());

        let discord = ListFilter {
            source: Some(Source::Discord),
            ..ListFilter::default()
        };
        let page = store.list(discord, None, 10).unwrap().unwrap();
        assert_eq!(page.jobs.len(), 1);
        assert_eq!(page.jobs[0].id, ids[2]);
        let succeeded = ListFilter {
            state: Some(JobState::Succeeded),
            ..ListFilter::default()
        };
        assert!(store
            .list(succeeded, None, 10)
            .unwrap()
            .unwrap()
            .jobs
            .is_empty());
        assert!(store.list(all, Some("zz"), 10).unwrap().is_err());

        // Source and state together, paged with a cursor.
        let cli_queued = ListFilter {
            source: Some(Source::Cli),
            state: Some(JobState::Queued),
        };
        let page = store.list(cli_queued, None, 3).unwrap().unwrap();
        let got: Vec<_> = page.jobs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(got, [ids[4].clone(), ids[3].clone(), ids[1].clone()]);
        let page = store
            .list(cli_queued, page.next_cursor.as_deref(), 3)
            .unwrap()
            .unwrap();
        let got: Vec<_> = page.jobs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(got, [ids[0].clone()]);
        let discord_succeeded = ListFilter {
            source: Some(Source::Discord),
            state: Some(JobState::Succeeded),
        };
        assert!(store
            .list(discord_succeeded, None, 10)
            .unwrap()
            .unwrap()
            .jobs
            .is_empty());
    }
}
