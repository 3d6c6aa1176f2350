//! toktra-wfp.sys — a WFP inspection callout driver that observes outbound TLS and
//! QUIC connections and never blocks, delays or changes them.
//!
//! Why these layers:
//!
//! - FWPM_LAYER_ALE_AUTH_CONNECT_V4/V6 is where a connection is authorized: it has the
//!   process, its path, the user and the destination, and for UDP the first datagram.
//!   It cannot see a TCP ClientHello: the hello is the first *payload* byte, sent only
//!   after the three-way handshake has completed, long after the connect was
//!   authorized. So ALE_AUTH_CONNECT alone would never learn the SNI of a TCP flow.
//! - FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4/V6 is where the flow exists: this driver
//!   attaches its per-flow context there (FwpsFlowAssociateContext0) to the stream or
//!   datagram callout.
//! - FWPM_LAYER_STREAM_V4/V6 carries the TCP payload in order: the first outbound bytes
//!   are the ClientHello (SNI, ALPN, JA4 via toktra-wire); every indication is counted
//!   (bytes and TLS records, both ways).
//! - FWPM_LAYER_DATAGRAM_DATA_V4/V6 carries UDP/443: the first QUIC long-header
//!   datagrams are copied raw and bounded; user mode decrypts the Initial.
//! - Flow deletion writes the final record (duration, bytes, records).
//!
//! Inspection only: every filter's action is FWP_ACTION_CALLOUT_INSPECTION, every
//! classify returns FWP_ACTION_CONTINUE, never BLOCK, never pends, never clears
//! FWPS_RIGHT_ACTION_WRITE and never overrides a decision. Returning PERMIT would be
//! worse than useless: a PERMIT with the write right cleared (or from a high-weight
//! sublayer) ends arbitration for lower filters, so traffic the firewall or another
//! security product meant to block would be let through — a hole in the firewall.
//!
//! The driver cannot panic: the release build links a panic handler that calls a
//! symbol nobody defines, so linking the .sys fails if any panic path survives LTO.
#![cfg_attr(not(test), no_std)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(test)]
extern crate std;

pub mod engine;
pub mod flow;
pub mod nbl;
pub mod ring;
pub mod wfp;

#[cfg(all(target_os = "windows", not(test)))]
pub mod kernel;

/// Events the ring holds (2.7 KB each: about 1.4 MB of non-paged pool).
pub const RING_CAPACITY: usize = 512;
/// Flows tracked at once (about 1.5 KB each when all are live).
pub const MAX_FLOWS: usize = 4096;
/// ClientHellos reassembled at once (about 17.7 KB each).
pub const ASSEMBLER_SLOTS: usize = 32;
/// Remote port whose connections are inspected (TLS and QUIC to LLM APIs).
pub const INSPECTED_REMOTE_PORT: u16 = 443;

#[cfg(all(not(test), target_os = "windows"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    unsafe extern "C" {
        /// Defined nowhere on purpose: if the optimizer cannot prove every panic path
        /// dead, the reference survives and the link of toktra-wfp.sys fails.
        fn toktra_wfp_a_panic_path_survived_lto() -> !;
    }
    // SAFETY: never linked, so never called.
    unsafe { toktra_wfp_a_panic_path_survived_lto() }
}
