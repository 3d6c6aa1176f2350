//! The Toktra agent as a library, used by the Linux CLI and the Windows service.
//!
//! The pipeline of ARCHITECTURE.md: a source hands finished flows
//! ([`pipeline::ObservedFlow`]) to [`pipeline::run`], which classifies, estimates and
//! makes LLM events durable in the [`spool`]; [`runner::run`] adds enrollment and
//! renewal ([`identity`]), the [`uploader`], the [`budget`] side loop and the
//! [`status`] file. Platform-specific parts: identity storage is a trait
//! ([`identity::IdentityStore`]), configuration is layered ([`config::ConfigLayer`])
//! so each platform supplies its own layers, and the Linux packet tap lives in
//! [`source`] behind `cfg(target_os = "linux")`.

pub mod budget;
pub mod config;
pub mod demo;
pub mod flow;
pub mod identity;
pub mod pipeline;
pub mod runner;
pub mod source;
pub mod spool;
pub mod status;
pub mod tls;
pub mod uploader;
