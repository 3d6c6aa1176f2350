//! The types every Toktra component exchanges: Event v1 (agent → server), batches,
//! ingest acknowledgements, budget status, configuration keys and the HTTP paths they
//! travel on. Each is defined once, here; agents, the extension host and the server
//! all use these definitions so the JSON shape cannot drift between them.
//!
//! Compatibility rule: unknown fields are ignored (a newer agent talking to an older
//! server), and a missing required field is a deserialization error that names the
//! field, which the server turns into a 400.

pub mod api;
pub mod budget;
pub mod config;
pub mod event;
pub mod identity;

pub use budget::{BudgetEntry, BudgetState, BudgetStatus};
pub use event::{
    Batch, Dropped, FlowEvent, IngestResponse, ProcessInfo, Source, Transport, ValidationError,
};
