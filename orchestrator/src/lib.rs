//! HTTP APIs, job store, queues and scheduling. Built in the orchestrator issue; empty for now.
