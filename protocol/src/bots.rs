//! The `[bots]` section of Refrain's one configuration file: what `refrain bots` needs to talk
//! to an orchestrator (its URL and API key) and to each chat platform (tokens, API base URLs,
//! allowed chats), and the per-user limits the core enforces through the job owner. It lives
//! here, beside the other shared types, because both the orchestrator's configuration (which
//! must accept and check the section) and the `bots` crate (which must not depend on the
//! orchestrator) read it.
//!
//! Tokens and keys are [`Secret`]s: their `Debug` form is `"<secret>"`, so a configuration that
//! is logged or printed never shows them.

use serde::{Deserialize, Serialize};

/// A token or key: kept as given, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"<secret>\"")
    }
}

/// `[bots]`: the chat front ends run by `refrain bots`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BotsConfig {
    /// The orchestrator the bots send jobs to (its Refrain API).
    pub server: String,
    /// An API key of that server made with `refrain keys add NAME --on-behalf-of
    /// telegram,discord`, so that each chat user is a job owner of their own. Also
    /// `REFRAIN_BOTS__API_KEY`.
    pub api_key: Option<Secret>,
    /// The base URL song links are given with (`<public_url>/output/…`). Default: `server`.
    pub public_url: Option<String>,
    /// Per-user limits, enforced by the server for each `telegram:<user>` owner (0: none).
    pub limits: UserLimits,
    /// Song length when the request names none (95, or 96 to 285).
    pub default_length_seconds: u32,
    /// The Telegram bot; absent: no Telegram bot.
    pub telegram: Option<TelegramConfig>,
    /// The Discord bot; absent: no Discord bot.
    pub discord: Option<DiscordConfig>,
}

impl Default for BotsConfig {
    fn default() -> Self {
        BotsConfig {
            server: "http://127.0.0.1:8000".into(),
            api_key: None,
            public_url: None,
            limits: UserLimits {
                concurrent: 1,
                per_minute: 3,
                per_day: 30,
            },
            default_length_seconds: 95,
            telegram: None,
            discord: None,
        }
    }
}

/// Per-user limits (`[bots.limits]`), sent with every job as `on_behalf_of.limits`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserLimits {
    /// Songs queued or being made at once.
    pub concurrent: usize,
    /// Songs asked for in any 60 seconds.
    pub per_minute: usize,
    /// Songs asked for in any 24 hours.
    pub per_day: usize,
}

/// `[bots.telegram]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// The token BotFather gave (`123456:ABC…`). Also `REFRAIN_BOTS__TELEGRAM__TOKEN`.
    pub token: Option<Secret>,
    /// The Bot API server: Telegram's, or a self-hosted `telegram-bot-api` (which allows
    /// uploads up to 2000 MB; raise `max_upload_bytes` with it).
    pub api_url: String,
    /// Chats the bot answers in (ids); empty: every chat.
    pub allowed_chats: Vec<i64>,
    /// Largest song sent as audio; a larger one is sent as a link (Telegram: 50 MB).
    pub max_upload_bytes: u64,
    /// Least time between two edits of one chat's progress messages (milliseconds).
    pub edit_interval_ms: u64,
    /// Long-polling timeout of `getUpdates` (seconds).
    pub poll_timeout_seconds: u32,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            token: None,
            api_url: "https://api.telegram.org".into(),
            allowed_chats: Vec::new(),
            max_upload_bytes: 50 * 1000 * 1000,
            edit_interval_ms: 3000,
            poll_timeout_seconds: 25,
        }
    }
}

/// `[bots.discord]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    /// The bot token of the Discord application (Developer Portal → Bot → Reset Token). Also
    /// `REFRAIN_BOTS__DISCORD__TOKEN`.
    pub token: Option<Secret>,
    /// The application id (Developer Portal → General Information); asked of Discord when
    /// absent.
    pub application_id: Option<u64>,
    /// Discord's REST base (`https://discord.com`; every `/api/v10/…` call goes there). The
    /// gateway's URL is what this REST API's `GET /gateway/bot` answers.
    pub api_url: String,
    /// Guilds whose members may use the bot, where its commands are registered at once;
    /// empty: every guild and direct messages, with the commands registered globally (Discord
    /// may take up to an hour to show new global commands).
    pub guilds: Vec<u64>,
    /// Upload limit used when an interaction reports none (Discord's default: 10 MiB).
    pub default_upload_bytes: u64,
    /// Least time between two edits of one song's progress message (milliseconds).
    pub edit_interval_ms: u64,
    /// How long an interaction token lets the bot edit its answer (Discord: 15 minutes).
    /// After that (less a safety margin of a tenth) the song is posted as a channel message that
    /// mentions its requester.
    pub interaction_token_seconds: u64,
    /// How long a download link (for a song too large to upload) works, in hours.
    pub link_hours: u64,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            token: None,
            application_id: None,
            api_url: "https://discord.com".into(),
            guilds: Vec::new(),
            default_upload_bytes: 10 * 1024 * 1024,
            edit_interval_ms: 2000,
            interaction_token_seconds: 15 * 60,
            link_hours: 24,
        }
    }
}

impl BotsConfig {
    /// What is wrong with the section, if anything (checked when the configuration loads).
    pub fn validate(&self) -> Result<(), String> {
        if !(self.server.starts_with("http://") || self.server.starts_with("https://")) {
            return Err(format!(
                "bots.server must be an http(s) URL, not {:?}",
                self.server
            ));
        }
        let length = self.default_length_seconds;
        if !(length == 95 || (96..=285).contains(&length)) {
            return Err("bots.default_length_seconds must be 95 or 96 to 285".into());
        }
        if let Some(d) = &self.discord {
            if !(d.api_url.starts_with("http://") || d.api_url.starts_with("https://")) {
                return Err("bots.discord.api_url must be an http(s) URL".into());
            }
            if d.edit_interval_ms == 0 || d.interaction_token_seconds == 0 {
                return Err(
                    "bots.discord.edit_interval_ms and interaction_token_seconds must be above 0"
                        .into(),
                );
            }
            if !(1..=168).contains(&d.link_hours) {
                return Err("bots.discord.link_hours must be 1 to 168".into());
            }
        }
        if let Some(t) = &self.telegram {
            if !(t.api_url.starts_with("http://") || t.api_url.starts_with("https://")) {
                return Err("bots.telegram.api_url must be an http(s) URL".into());
            }
            if t.edit_interval_ms == 0 || t.poll_timeout_seconds == 0 {
                return Err(
                    "bots.telegram.edit_interval_ms and poll_timeout_seconds must be above 0"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let config = BotsConfig {
            api_key: Some(Secret::new("rf_abc")),
            telegram: Some(TelegramConfig {
                token: Some(Secret::new("123:XYZ")),
                ..TelegramConfig::default()
            }),
            discord: Some(DiscordConfig {
                token: Some(Secret::new("MTIz.discord")),
                ..DiscordConfig::default()
            }),
            ..BotsConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("rf_abc") && !shown.contains("123:XYZ") && !shown.contains("MTIz"),
            "{shown}"
        );
        assert!(shown.contains("<secret>"));
        assert_eq!(config.api_key.unwrap().expose(), "rf_abc");
    }

    #[test]
    fn validation_names_the_key() {
        assert!(BotsConfig::default().validate().is_ok());
        let bad = BotsConfig {
            default_length_seconds: 90,
            ..BotsConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .contains("default_length_seconds"));
        let bad = BotsConfig {
            server: "127.0.0.1:8000".into(),
            ..BotsConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("bots.server"));
    }
}
