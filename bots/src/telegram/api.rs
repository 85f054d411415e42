//! Calls to the Telegram Bot API made safe to repeat: a 429 (`retry_after`) waits exactly as
//! long as Telegram asks and tries again, a network error backs off and tries again a few
//! times, and editing a message to the text it already has ("message is not modified") counts
//! as done. Progress edits are also paced per chat ([`Pacer`]): at most one per
//! `edit_interval_ms`, whichever job of the chat it is for.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use teloxide::prelude::*;
use teloxide::types::{InlineKeyboardMarkup, MessageId};
use teloxide::{ApiError, RequestError};
use tokio::time::Instant;

use crate::follow::Backoff;

/// Attempts of one call before its error is returned.
const ATTEMPTS: u32 = 6;

/// Runs `call` until it succeeds, honouring `retry_after` and backing off on network errors.
pub async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, RequestError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RequestError>>,
{
    let backoff = Backoff::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Ok(v) => return Ok(v),
            Err(RequestError::RetryAfter(wait)) if attempt < ATTEMPTS => {
                tracing::info!(
                    call = what,
                    seconds = wait.seconds(),
                    "Telegram asks to wait"
                );
                tokio::time::sleep(wait.duration()).await;
            }
            Err(e @ (RequestError::Network(_) | RequestError::Io(_))) if attempt < ATTEMPTS => {
                tracing::debug!(call = what, error = %e, "Telegram unreachable; retrying");
                tokio::time::sleep(backoff.delay(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Edits a message's text (and buttons); the same text again is not an error.
pub async fn edit(
    bot: &Bot,
    chat: ChatId,
    message: MessageId,
    text: &str,
    keyboard: Option<InlineKeyboardMarkup>,
) -> Result<(), RequestError> {
    let result = retrying("editMessageText", || {
        let mut request = bot.edit_message_text(chat, message, text);
        if let Some(k) = &keyboard {
            request = request.reply_markup(k.clone());
        }
        async move { request.await }
    })
    .await;
    match result {
        Ok(_) | Err(RequestError::Api(ApiError::MessageNotModified)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Per-chat pacing of progress edits.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Mutex<HashMap<i64, Instant>>,
}

impl Pacer {
    pub fn new(interval: Duration) -> Pacer {
        Pacer {
            interval,
            next: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for this chat's next free slot and takes it.
    pub async fn turn(&self, chat: ChatId) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = next.get(&chat.0).copied().unwrap_or(now).max(now);
            next.insert(chat.0, slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Marks an edit of this chat as just answered: the next one waits a whole interval from
    /// now (an edit that itself waited for a `retry_after` does not leave the next one due).
    pub fn sent(&self, chat: ChatId) {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let after = Instant::now() + self.interval;
        let slot = next.entry(chat.0).or_insert(after);
        *slot = (*slot).max(after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn edits_of_one_chat_are_spaced() {
        let pacer = Pacer::new(Duration::from_secs(3));
        let start = Instant::now();
        pacer.turn(ChatId(1)).await;
        pacer.turn(ChatId(2)).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "other chats do not wait");
        pacer.turn(ChatId(1)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        pacer.turn(ChatId(1)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(6));
        // An edit answered late (after a retry_after) pushes the next one back.
        tokio::time::sleep(Duration::from_secs(5)).await;
        pacer.sent(ChatId(1));
        pacer.turn(ChatId(1)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(14));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_waited_for() {
        let start = Instant::now();
        let mut calls = 0;
        let r: Result<u32, _> = retrying("test", || {
            calls += 1;
            let n = calls;
            async move {
                if n == 1 {
                    Err(RequestError::RetryAfter(
                        teloxide::types::Seconds::from_seconds(7),
                    ))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }
}
