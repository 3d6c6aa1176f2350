//! toktra-wire: the first bytes of a connection, parsed without allocation, without
//! unsafe code and without any path that can panic. Shared by the Windows kernel
//! driver and every user-mode component, and fuzzed.
#![no_std]
#![forbid(unsafe_code)]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::arithmetic_side_effects
)]

pub mod ip;
pub mod link;
pub mod tcp;
pub mod udp;
