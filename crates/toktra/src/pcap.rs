//! `toktra pcap FILE...`: one JSON line per TLS or QUIC flow found in capture files.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use toktra_agent::flow::{FlowConfig, FlowRecord, FlowTracker};
use toktra_agent::source::pcap::PcapSource;
use toktra_catalog::Catalog;
use toktra_wire::link::LinkType;

const LONG_HELP: &str = r#"Every TCP connection whose client sent a TLS ClientHello and every QUIC connection
whose client sent an Initial carrying one is reported, on any port: TLS and QUIC are
recognised by content. ClientHellos split over several TCP segments (also out of
order or retransmitted) or several QUIC Initials are reassembled. The file is
streamed, and each flow is written as soon as it ends (FIN, RST, idle timeout, or
the end of the input).

Output (stdout), one object per line: ts (RFC 3339 UTC of the flow's first packet),
transport (tcp|quic), src, sport, dst, dport (src is the client), sni (null if
absent), alpn (array, client order), tls_version (highest offered), ja4, ech (bool:
Encrypted Client Hello offered, sni is then the outer name), provider, product,
category (null unless the SNI is in the LLM catalog), bytes_out, bytes_in (transport
payload bytes), packets_out, packets_in, duration_ms, records_in (TLS
application-data records from the server; null for QUIC or when the server stream
had gaps), then the handshake as measured on the connection, for token estimates
that do not assume one server's certificate chain: client_handshake_bytes,
server_handshake_bytes (bytes each way before the client's second TLS flight, or
before its first QUIC 1-RTT packet), server_handshake_records (the server's
application-data records among them; TCP), quic_packets_out, quic_packets_in
(datagrams after the handshake; QUIC) — each null when not seen.

Lines come in the order flows end (flows found idle at the same moment by first
packet); flows still open at the end of the input follow, by first packet. The same
input always gives the same output. With --threads 2 or 3 one thread reads and
splits the files into packets while another tracks flows (and a third writes the
lines), handing packets over in batches of 256 KiB, at most four in flight; the
output does not depend on the number of threads.

A summary goes to stderr. Exit status: 0 on success; 1 if a file could not be read
or is damaged (the error names the byte offset; flows read before it are still
written).

Examples:
  toktra pcap capture.pcapng.gz > flows.jsonl
  toktra pcap --llm-only monday.pcap tuesday.pcap | jq -r .product | sort | uniq -c"#;

// The long --help text is LONG_HELP; the one-line summary is the subcommand's doc in main.rs.
#[derive(clap::Args)]
#[command(after_long_help = LONG_HELP)]
pub struct Args {
    /// Capture files: pcap or pcapng, optionally gzip-compressed (detected by content).
    /// They are read in the given order as one capture.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print only flows whose SNI matches the LLM provider catalog.
    #[arg(long)]
    llm_only: bool,
    /// Never draw a progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long)]
    no_progress: bool,
    /// Threads: 1 does everything on one thread; 2 reads the files (decompressing
    /// gzip and splitting them into packets) on a second thread; 3 also writes the
    /// JSON lines on a third. The output is the same whatever the number; more than
    /// 3 gains nothing. [default: 3, or 1 on a single-core machine]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

#[derive(Default)]
struct Summary {
    flows: u64,
    with_sni: u64,
    llm: u64,
}

struct Writer<'c> {
    out: BufWriter<io::StdoutLock<'static>>,
    /// One line is built here first, then written in one call.
    line: Vec<u8>,
    catalog: &'c Catalog,
    llm_only: bool,
    summary: Summary,
    /// The last second formatted ("2026-01-01T00:00:00"): flows close in capture
    /// order, so consecutive lines nearly always share it.
    ts_cache: Option<(i64, [u8; 19])>,
}

impl Writer<'_> {
    /// Writes the JSON line field by field. serde_json's generic path (a call per
    /// punctuation mark, a String per timestamp and address) was a tenth of the time
    /// on a 100,000-flow capture; the output is byte for byte what it produced.
    fn write(&mut self, r: &FlowRecord) -> anyhow::Result<()> {
        let entry = r.sni.as_deref().and_then(|s| self.catalog.lookup(s));
        self.summary.flows += 1;
        self.summary.with_sni += u64::from(r.sni.is_some());
        self.summary.llm += u64::from(entry.is_some());
        if self.llm_only && entry.is_none() {
            return Ok(());
        }
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        line.extend_from_slice(b"{\"ts\":\"");
        self.rfc3339(&mut line, r.first_ts);
        line.extend_from_slice(b"\",\"transport\":\"");
        line.extend_from_slice(r.transport.as_str().as_bytes());
        line.extend_from_slice(b"\",\"src\":\"");
        ip(&mut line, r.client.ip());
        line.extend_from_slice(b"\",\"sport\":");
        int(&mut line, r.client.port());
        line.extend_from_slice(b",\"dst\":\"");
        ip(&mut line, r.server.ip());
        line.extend_from_slice(b"\",\"dport\":");
        int(&mut line, r.server.port());
        line.extend_from_slice(b",\"sni\":");
        opt_str(&mut line, r.sni.as_deref())?;
        line.extend_from_slice(b",\"alpn\":[");
        for (i, id) in r.alpn.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            string(&mut line, id)?;
        }
        line.extend_from_slice(b"],\"tls_version\":");
        string(&mut line, r.tls_version_name())?;
        line.extend_from_slice(b",\"ja4\":");
        string(&mut line, &r.ja4)?;
        line.extend_from_slice(if r.ech {
            b",\"ech\":true,\"provider\":"
        } else {
            b",\"ech\":false,\"provider\":"
        });
        opt_str(&mut line, entry.map(|e| e.provider.as_str()))?;
        line.extend_from_slice(b",\"product\":");
        opt_str(&mut line, entry.map(|e| e.product.as_str()))?;
        line.extend_from_slice(b",\"category\":");
        opt_str(&mut line, entry.map(|e| e.category.as_str()))?;
        let duration_ms = u64::try_from(r.duration().as_millis()).unwrap_or(u64::MAX);
        for (name, value) in [
            ("bytes_out", r.bytes_out),
            ("bytes_in", r.bytes_in),
            ("packets_out", r.packets_out),
            ("packets_in", r.packets_in),
            ("duration_ms", duration_ms),
        ] {
            key(&mut line, name);
            int(&mut line, value);
        }
        let o = &r.overhead;
        for (name, value) in [
            ("records_in", r.records_in),
            ("client_handshake_bytes", o.client_handshake_bytes),
            ("server_handshake_bytes", o.server_handshake_bytes),
            ("server_handshake_records", o.server_handshake_records),
            ("quic_packets_out", o.quic_packets_out),
            ("quic_packets_in", o.quic_packets_in),
        ] {
            key(&mut line, name);
            opt_int(&mut line, value);
        }
        line.extend_from_slice(b"}\n");
        let written = self.out.write_all(&line).context("writing to stdout");
        self.line = line;
        written
    }

    /// RFC 3339 UTC with microseconds, as chrono's `to_rfc3339_opts(Micros, true)`
    /// writes it.
    fn rfc3339(&mut self, out: &mut Vec<u8>, ts: Duration) {
        let secs = i64::try_from(ts.as_secs()).unwrap_or(i64::MAX);
        let Some(dt) = DateTime::<Utc>::from_timestamp(secs, ts.subsec_nanos()) else {
            out.extend_from_slice(rfc3339_chrono(DateTime::default()).as_bytes());
            return;
        };
        if !(0..=9999).contains(&dt.year()) {
            // Signed years: chrono's own spelling.
            out.extend_from_slice(rfc3339_chrono(dt).as_bytes());
            return;
        }
        let prefix = match self.ts_cache {
            Some((s, p)) if s == secs => p,
            _ => {
                let mut p = [0u8; 19];
                let mut put = |at: usize, v: u32| {
                    // Two digits; every field here is below 100.
                    p[at] = b'0' + (v / 10 % 10) as u8;
                    p[at + 1] = b'0' + (v % 10) as u8;
                };
                let year = dt.year() as u32;
                put(0, year / 100);
                put(2, year % 100);
                put(5, dt.month());
                put(8, dt.day());
                put(11, dt.hour());
                put(14, dt.minute());
                put(17, dt.second());
                p[4] = b'-';
                p[7] = b'-';
                p[10] = b'T';
                p[13] = b':';
                p[16] = b':';
                self.ts_cache = Some((secs, p));
                p
            }
        };
        out.extend_from_slice(&prefix);
        let mut micros = ts.subsec_micros();
        let mut frac = *b".000000Z";
        for digit in frac[1..7].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        out.extend_from_slice(&frac);
    }
}

fn rfc3339_chrono(dt: DateTime<Utc>) -> String {
    dt.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `,"name":` — the separator and key before a value.
fn key(line: &mut Vec<u8>, name: &str) {
    line.extend_from_slice(b",\"");
    line.extend_from_slice(name.as_bytes());
    line.extend_from_slice(b"\":");
}

fn opt_int(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(n) => int(out, n),
        None => out.extend_from_slice(b"null"),
    }
}

fn int<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

fn ip(out: &mut Vec<u8>, addr: IpAddr) {
    match addr {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                int(out, octet);
            }
        }
        // Writing into a Vec cannot fail.
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// A JSON string: as is when nothing needs escaping (host names, ALPN ids, catalog
/// names nearly always), else through serde_json's escaping.
fn string(out: &mut Vec<u8>, s: &str) -> anyhow::Result<()> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s)?;
    }
    Ok(())
}

fn opt_str(out: &mut Vec<u8>, s: Option<&str>) -> anyhow::Result<()> {
    match s {
        Some(s) => string(out, s),
        None => {
            out.extend_from_slice(b"null");
            Ok(())
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let catalog = Catalog::embedded();
    let total_bytes: u64 = args
        .files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = if io::stderr().is_terminal() && !args.no_progress {
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let threads = args.threads.map_or_else(default_threads, usize::from);
    let new_writer = || Writer {
        out: BufWriter::with_capacity(1 << 20, io::stdout().lock()),
        line: Vec::with_capacity(1024),
        catalog,
        llm_only: args.llm_only,
        summary: Summary::default(),
        ts_cache: None,
    };

    let mut track = Tracking {
        tracker: FlowTracker::new(FlowConfig::default()),
        packets: 0,
        unsupported_link: 0,
        failures: Vec::new(),
        ready: Vec::new(),
    };
    let summary = if threads == 1 {
        let mut writer = new_writer();
        let mut done_bytes = 0u64;
        for path in &args.files {
            let result = read_file(path, &bar, done_bytes, |ts, link, data| {
                track.packet(ts, link, data);
                track.ready.drain(..).try_for_each(|r| writer.write(&r))
            });
            done_bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            if let Err(e) = result {
                track.failed(&bar, path, &e);
            }
        }
        let Tracking { tracker, .. } = &mut track;
        let tracker = std::mem::replace(tracker, FlowTracker::new(FlowConfig::default()));
        for record in tracker.finish() {
            writer.write(&record)?;
        }
        writer.out.flush().context("writing to stdout")?;
        writer.summary
    } else {
        pipelined(&args.files, &bar, &mut track, threads, new_writer)?
    };
    bar.finish_and_clear();

    let elapsed = started.elapsed().as_secs_f64();
    let s = &summary;
    eprintln!(
        "toktra pcap: {} flows, {} with SNI, {} LLM flows; {} packets in {:.3} s ({:.0} packets/s){}",
        s.flows,
        s.with_sni,
        s.llm,
        track.packets,
        elapsed,
        track.packets as f64 / elapsed.max(1e-9),
        if track.unsupported_link > 0 {
            format!(
                "; {} packets of unsupported link types skipped",
                track.unsupported_link
            )
        } else {
            String::new()
        }
    );
    if track.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// Threads used when `--threads` is not given: all three pipeline stages when
/// there is more than one core (on two cores too: reading and writing together
/// take less than tracking, so they share the second core without slowing it), one
/// thread on a single core.
fn default_threads() -> usize {
    match std::thread::available_parallelism().map_or(1, |n| n.get()) {
        1 => 1,
        _ => MAX_THREADS,
    }
}

/// Pipeline stages: reading, tracking, writing.
const MAX_THREADS: usize = 3;

/// The flow-tracking stage and what it counts.
struct Tracking {
    tracker: FlowTracker,
    packets: u64,
    unsupported_link: u64,
    failures: Vec<PathBuf>,
    /// Records of flows that ended, in the order they ended, not yet written.
    ready: Vec<FlowRecord>,
}

impl Tracking {
    fn packet(&mut self, ts: Duration, link: Result<LinkType, u32>, data: &[u8]) {
        self.packets += 1;
        match link {
            Ok(link) => self.tracker.track(ts, link, data),
            Err(_) => self.unsupported_link += 1,
        }
        let ended = self.tracker.poll_expired(ts);
        // Nearly always empty: skip the extend machinery (it showed per packet).
        if !ended.as_slice().is_empty() {
            self.ready.extend(ended);
        }
    }

    fn failed(&mut self, bar: &ProgressBar, path: &Path, e: &anyhow::Error) {
        bar.suspend(|| eprintln!("toktra pcap: {e:#}"));
        self.failures.push(path.to_owned());
    }
}

/// Packets copied out of the reader's buffer, handed from the reading thread to
/// the tracking thread in one piece (a message per packet would cost more than the
/// packet's tracking).
#[derive(Default)]
struct Batch {
    data: Vec<u8>,
    /// Timestamp, link type and end of each packet's bytes in `data`.
    packets: Vec<(Duration, Result<LinkType, u32>, usize)>,
}

/// Packet bytes per batch: large enough that hand-overs are rare, small enough to
/// stay in cache between the two threads.
const BATCH_BYTES: usize = 256 * 1024;
/// Batches in flight between reading and tracking (bounds the memory the pipeline
/// adds to a few megabytes).
const BATCHES_IN_FLIGHT: usize = 4;
/// Records per hand-over to the writing thread.
const RECORDS_PER_SEND: usize = 256;

enum Read {
    Batch(Batch),
    /// The end of one file: Ok, or why it could not be read to its end.
    FileDone(PathBuf, anyhow::Result<()>),
}

/// Reads on one thread, tracks on the calling one, and with three threads writes on
/// a third. Records are written in the order the single-threaded path writes them.
fn pipelined<'w>(
    files: &[PathBuf],
    bar: &ProgressBar,
    track: &mut Tracking,
    threads: usize,
    new_writer: impl Fn() -> Writer<'w> + Sync,
) -> anyhow::Result<Summary> {
    std::thread::scope(|scope| {
        let (to_tracker, from_reader) = mpsc::sync_channel::<Read>(BATCHES_IN_FLIGHT);
        let (recycle, recycled) = mpsc::sync_channel::<Batch>(BATCHES_IN_FLIGHT + 2);
        scope.spawn(move || read_files(files, bar, &to_tracker, &recycled));

        let (mut inline, mut to_writer, writer_thread) = if threads >= MAX_THREADS {
            let (tx, rx) = mpsc::sync_channel::<Vec<FlowRecord>>(BATCHES_IN_FLIGHT * 4);
            let new_writer = &new_writer;
            let handle = scope.spawn(move || -> anyhow::Result<Summary> {
                let mut writer = new_writer();
                for records in rx {
                    for r in &records {
                        writer.write(r)?;
                    }
                }
                writer.out.flush().context("writing to stdout")?;
                Ok(writer.summary)
            });
            (None, Some(tx), Some(handle))
        } else {
            (Some(new_writer()), None, None)
        };
        // Hands finished records on; false once the writing thread has stopped
        // (its error is collected when it is joined).
        let mut emit = |records: &mut Vec<FlowRecord>, all: bool| -> anyhow::Result<bool> {
            if let Some(w) = inline.as_mut() {
                records.drain(..).try_for_each(|r| w.write(&r))?;
            } else if let Some(tx) = to_writer.as_ref()
                && (all || records.len() >= RECORDS_PER_SEND)
                && !records.is_empty()
                && tx.send(std::mem::take(records)).is_err()
            {
                return Ok(false);
            }
            Ok(true)
        };

        let mut open = true;
        for msg in from_reader.iter() {
            match msg {
                Read::Batch(mut batch) => {
                    let mut start = 0;
                    for &(ts, link, end) in &batch.packets {
                        track.packet(ts, link, batch.data.get(start..end).unwrap_or_default());
                        start = end;
                    }
                    open = emit(&mut track.ready, false)?;
                    batch.data.clear();
                    batch.packets.clear();
                    // The reader allocates a new batch if this one is not back in time.
                    let _ = recycle.try_send(batch);
                }
                Read::FileDone(path, Err(e)) => track.failed(bar, &path, &e),
                Read::FileDone(_, Ok(())) => {}
            }
            if !open {
                break;
            }
        }
        // Dropping the receiver stops the reader if the writer stopped early.
        drop(from_reader);
        if open {
            let tracker =
                std::mem::replace(&mut track.tracker, FlowTracker::new(FlowConfig::default()));
            track.ready.extend(tracker.finish());
            emit(&mut track.ready, true)?;
        }
        drop(to_writer.take());
        match (inline, writer_thread) {
            (Some(mut w), _) => {
                w.out.flush().context("writing to stdout")?;
                Ok(w.summary)
            }
            (None, Some(handle)) => handle
                .join()
                .map_err(|_| anyhow::anyhow!("the writing thread panicked"))?,
            (None, None) => Err(anyhow::anyhow!("no writer")),
        }
    })
}

/// The reading stage: every file in turn, packets in batches, then the file's result.
fn read_files(
    files: &[PathBuf],
    bar: &ProgressBar,
    to_tracker: &SyncSender<Read>,
    recycled: &Receiver<Batch>,
) {
    let mut done_bytes = 0u64;
    let fresh = || recycled.try_recv().unwrap_or_default();
    for path in files {
        let mut batch = fresh();
        let result = read_file(path, bar, done_bytes, |ts, link, data| {
            batch.data.extend_from_slice(data);
            batch.packets.push((ts, link, batch.data.len()));
            if batch.data.len() >= BATCH_BYTES {
                let full = std::mem::replace(&mut batch, fresh());
                // The tracker only hangs up when it stopped for good.
                to_tracker
                    .send(Read::Batch(full))
                    .map_err(|_| anyhow::anyhow!("the tracking thread stopped"))?;
            }
            Ok(())
        });
        done_bytes += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if !batch.packets.is_empty() && to_tracker.send(Read::Batch(batch)).is_err() {
            return;
        }
        if to_tracker
            .send(Read::FileDone(path.clone(), result))
            .is_err()
        {
            return;
        }
    }
}

/// Streams the packets of one capture file into `each` (timestamp, link type,
/// bytes), updating the progress bar.
fn read_file(
    path: &Path,
    bar: &ProgressBar,
    done_bytes: u64,
    mut each: impl FnMut(Duration, Result<LinkType, u32>, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut source = PcapSource::open(path).with_context(|| format!("{}", path.display()))?;
    let gzip = source.is_gzip();
    let mut packets = 0u64;
    loop {
        let packet = match source.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("{}", path.display())),
        };
        packets += 1;
        each(packet.ts, packet.link, packet.data)?;
        if packets & 0x1fff == 0 && !bar.is_hidden() {
            if gzip {
                bar.set_message(format!("{packets} packets"));
            } else {
                bar.set_position(done_bytes + source.offset());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer() -> Writer<'static> {
        Writer {
            out: BufWriter::new(io::stdout().lock()),
            line: Vec::new(),
            catalog: Catalog::embedded(),
            llm_only: false,
            summary: Summary::default(),
            ts_cache: None,
        }
    }

    #[test]
    fn timestamps_are_spelled_as_chrono_spells_them() {
        let mut w = writer();
        for (secs, nanos) in [
            (0u64, 0u32),
            (1_767_225_600, 20_999),
            (1_767_225_600, 999_999_999),
            (1_767_225_601, 1_000),
            (951_782_400, 5),               // 2000-02-29
            (253_402_300_799, 123_456_789), // 9999-12-31T23:59:59
            (253_402_300_800, 0),           // year 10000: signed form
            (u64::MAX, 0),                  // out of chrono's range: the epoch, as before
        ] {
            let ts = Duration::new(secs, nanos);
            let mut out = Vec::new();
            w.rfc3339(&mut out, ts);
            let expected =
                DateTime::<Utc>::from_timestamp(i64::try_from(secs).unwrap_or(i64::MAX), nanos)
                    .unwrap_or_default();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                rfc3339_chrono(expected),
                "{secs}.{nanos:09}"
            );
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for s in [
            "api.openai.com",
            "",
            "a\"b",
            "back\\slash",
            "tab\there",
            "nul\0",
            "\u{7f}del",
            "ünïcödé\u{fffd}",
            "\u{1b}[31m",
        ] {
            let mut out = Vec::new();
            string(&mut out, s).unwrap();
            assert_eq!(out, serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }
}
