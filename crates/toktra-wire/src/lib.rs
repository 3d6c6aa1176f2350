//! toktra-wire: the first bytes of a connection, parsed without allocation, without
//! unsafe code and without any path that can panic. Shared by the Windows kernel
//! driver and every user-mode component, and fuzzed.
//!
//! - [`tls`]: TLS record header and a zero-copy [`ClientHello`](tls::ClientHello)
//!   view (SNI, ALPN, versions, cipher suites, extensions, signature algorithms,
//!   groups, ECH, GREASE).
//! - [`assembler`]: [`HelloAssembler`](assembler::HelloAssembler), a fixed-buffer
//!   reassembler for a ClientHello split over TCP segments and TLS records, or over
//!   QUIC CRYPTO frames, in any order.
//! - [`ja4`]: JA4 fingerprints (FoxIO specification).
//! - [`info`]: [`HelloInfo`](info::HelloInfo), an owned fixed-size summary.
//! - [`quic`]: QUIC v1/v2 Initial packets; decryption behind the `quic` feature.
//! - [`link`], [`ip`], [`tcp`], [`udp`]: packet headers.
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

pub mod assembler;
pub mod error;
pub mod info;
pub mod ja4;
pub mod quic;
mod reader;
pub mod tls;

pub mod ip;
pub mod link;
pub mod tcp;
pub mod udp;

pub use assembler::{HelloAssembler, Progress, StreamKind};
pub use error::Error;
pub use info::HelloInfo;
pub use ja4::{Ja4, Ja4Memo, Transport, ja4, ja4_memo};
pub use tls::ClientHello;
