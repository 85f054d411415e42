//! Discord and Telegram front ends (API clients of the orchestrator). Empty for now.
