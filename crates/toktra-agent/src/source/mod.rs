//! Capture sources that feed the pipeline.

#[cfg(target_os = "linux")]
pub mod linux;

/// Capture files (pcap, pcapng, gzip), for `toktra pcap` and tests.
pub mod pcap;
