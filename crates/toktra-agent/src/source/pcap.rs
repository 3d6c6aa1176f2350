//! A streaming reader of pcap and pcapng capture files, gzip-compressed or not. The
//! file is read through a fixed buffer, never loaded whole; every packet comes with its
//! timestamp, its link type and the byte offset of its record, so a damaged file can
//! be reported precisely.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::read::MultiGzDecoder;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError, create_reader};
use toktra_wire::link::LinkType;

/// Read buffer; also the largest record accepted (jumbo frames and 256 KiB snap
/// lengths fit).
const BUFFER_LEN: usize = 1 << 20;

/// Why a capture could not be read (further).
#[derive(Debug, thiserror::Error)]
pub enum PcapSourceError {
    #[error("cannot read the capture: {0}")]
    Io(#[from] io::Error),
    #[error("not a pcap or pcapng file (unrecognised header{gz})", gz = if *.gzip { " after gunzip" } else { "" })]
    NotACapture { gzip: bool },
    #[error("the capture is empty")]
    Empty,
    #[error("damaged capture at byte offset {offset}{gz}: {detail}", gz = gz_note(*.gzip))]
    Damaged {
        offset: u64,
        gzip: bool,
        detail: String,
    },
    #[error("capture truncated: the record at byte offset {offset}{gz} is incomplete", gz = gz_note(*.gzip))]
    Truncated { offset: u64, gzip: bool },
}

fn gz_note(gzip: bool) -> &'static str {
    if gzip {
        " of the decompressed stream"
    } else {
        ""
    }
}

impl PcapSourceError {
    /// The byte offset of the damage, when the file was readable up to it.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Self::Damaged { offset, .. } | Self::Truncated { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// One captured frame.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Capture time since the Unix epoch.
    pub ts: Duration,
    /// The frame's link type; `Err(dlt)` for link types toktra does not parse.
    pub link: Result<LinkType, u32>,
    pub data: &'a [u8],
    /// Byte offset of the packet's record in the (decompressed) file.
    pub offset: u64,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: Result<LinkType, u32>,
    /// Timestamp units per second.
    resolution: u64,
    offset_secs: i64,
}

/// Streams packets out of one capture.
pub struct PcapSource {
    reader: Box<dyn PcapReaderIterator + Send>,
    /// An I/O or decompression error hidden from the parser (which would only say
    /// "read error"); reported with the offset where the data stopped.
    read_error: Arc<Mutex<Option<io::Error>>>,
    gzip: bool,
    /// Bytes of the last returned block, consumed on the next call (the packet
    /// borrows the reader's buffer until then).
    pending: usize,
    legacy: Option<(Result<LinkType, u32>, bool)>,
    interfaces: Vec<Interface>,
}

impl PcapSource {
    /// Opens a pcap/pcapng file; gzip is detected by its magic bytes, not its name.
    pub fn open(path: &Path) -> Result<Self, PcapSourceError> {
        let mut file = File::open(path)?;
        let mut magic = [0u8; 2];
        let got = read_up_to(&mut file, &mut magic)?;
        // A file can be rewound, so the parser reads it directly (no extra copy).
        file.seek(SeekFrom::Start(0))?;
        Self::build(
            Box::new(FillingReader(file)),
            magic.get(..got).unwrap_or_default(),
        )
    }

    pub fn from_reader<R: Read + Send + 'static>(mut reader: R) -> Result<Self, PcapSourceError> {
        let mut magic = [0u8; 2];
        let got = read_up_to(&mut reader, &mut magic)?;
        let head = magic.get(..got).unwrap_or_default();
        let whole = io::Cursor::new(head.to_vec()).chain(reader);
        Self::build(Box::new(FillingReader(whole)), head)
    }

    fn build(input: Box<dyn Read + Send>, magic: &[u8]) -> Result<Self, PcapSourceError> {
        if magic.is_empty() {
            return Err(PcapSourceError::Empty);
        }
        let gzip = magic == [0x1f, 0x8b];
        let input: Box<dyn Read + Send> = if gzip {
            Box::new(FillingReader(MultiGzDecoder::new(
                BufReader::with_capacity(64 * 1024, input),
            )))
        } else {
            input
        };
        let read_error = Arc::new(Mutex::new(None));
        let input = ErrorLatch {
            inner: input,
            error: Arc::clone(&read_error),
        };
        let latched = |e: PcapSourceError| match take_latched(&read_error) {
            Some(io) => PcapSourceError::Damaged {
                offset: 0,
                gzip,
                detail: io,
            },
            None => e,
        };
        let reader = create_reader(BUFFER_LEN, input).map_err(|e| {
            latched(match e {
                PcapError::Eof => PcapSourceError::Empty,
                PcapError::ReadError => PcapSourceError::Damaged {
                    offset: 0,
                    gzip,
                    detail: "read error (for gzip: not valid gzip data)".into(),
                },
                PcapError::Incomplete(_) | PcapError::UnexpectedEof => {
                    PcapSourceError::Truncated { offset: 0, gzip }
                }
                _ => PcapSourceError::NotACapture { gzip },
            })
        })?;
        Ok(Self {
            reader,
            read_error,
            gzip,
            pending: 0,
            legacy: None,
            interfaces: Vec::new(),
        })
    }

    /// Whether the file was gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Bytes of the (decompressed) file read so far.
    pub fn offset(&self) -> u64 {
        (self.reader.consumed() + self.pending) as u64
    }

    /// The next packet, `Ok(None)` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, PcapSourceError> {
        if self.pending > 0 {
            // `consume` moves the rest of the buffer down whenever half of it is
            // used (half a megabyte per shift); `refill` moves only the partial
            // record left at the end, when it must.
            self.reader.consume_noshift(self.pending);
            self.pending = 0;
        }
        loop {
            let offset = self.reader.consumed() as u64;
            let gzip = self.gzip;
            // The block borrows the reader; decide what to do with it first, then act.
            let action = match self.reader.next() {
                Ok((len, block)) => match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        let nanos = h.is_nanosecond_precision();
                        self.legacy = Some((link_of(h.network.0), nanos));
                        Action::Skip(len)
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let (link, nanos) = self.legacy.unwrap_or((Err(u32::MAX), false));
                        let frac = if nanos {
                            u64::from(b.ts_usec)
                        } else {
                            u64::from(b.ts_usec) * 1000
                        };
                        let ts = Duration::from_secs(u64::from(b.ts_sec))
                            + Duration::from_nanos(frac.min(999_999_999));
                        Action::Packet(len, ts, link, 16, b.data.len())
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        // A new section starts its own interface numbering.
                        self.interfaces.clear();
                        Action::Skip(len)
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        self.interfaces.push(Interface {
                            link: link_of(idb.linktype.0),
                            resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                            offset_secs: idb.ts_offset(),
                        });
                        Action::Skip(len)
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        match self.interfaces.get(epb.if_id as usize) {
                            Some(iface) => {
                                let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                let secs = (units / iface.resolution)
                                    .saturating_add_signed(iface.offset_secs);
                                let nanos = (u128::from(units % iface.resolution) * 1_000_000_000
                                    / u128::from(iface.resolution))
                                    as u64;
                                let ts = Duration::from_secs(secs) + Duration::from_nanos(nanos);
                                Action::Packet(
                                    len,
                                    ts,
                                    iface.link,
                                    28,
                                    (epb.caplen as usize).min(epb.data.len()),
                                )
                            }
                            None => Action::Fail(PcapSourceError::Damaged {
                                offset,
                                gzip,
                                detail: format!(
                                    "packet refers to interface {} which was never described",
                                    epb.if_id
                                ),
                            }),
                        }
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let link = self.interfaces.first().map_or(Err(u32::MAX), |i| i.link);
                        Action::Packet(len, Duration::ZERO, link, 12, spb.data.len())
                    }
                    PcapBlockOwned::NG(_) => Action::Skip(len),
                },
                Err(PcapError::Eof) => match take_latched(&self.read_error) {
                    Some(detail) => Action::Fail(PcapSourceError::Damaged {
                        offset,
                        gzip,
                        detail,
                    }),
                    None => return Ok(None),
                },
                Err(PcapError::Incomplete(_)) => Action::Refill,
                Err(PcapError::UnexpectedEof) => {
                    Action::Fail(match take_latched(&self.read_error) {
                        Some(detail) => PcapSourceError::Damaged {
                            offset,
                            gzip,
                            detail,
                        },
                        None => PcapSourceError::Truncated { offset, gzip },
                    })
                }
                Err(PcapError::BufferTooSmall) => Action::Fail(PcapSourceError::Damaged {
                    offset,
                    gzip,
                    detail: format!("a record claims more than {BUFFER_LEN} bytes"),
                }),
                Err(PcapError::ReadError) => Action::Fail(PcapSourceError::Damaged {
                    offset,
                    gzip,
                    detail: "read error (for gzip: corrupt compressed data)".into(),
                }),
                Err(e) => Action::Fail(PcapSourceError::Damaged {
                    offset,
                    gzip,
                    detail: describe(&e),
                }),
            };
            match action {
                Action::Skip(len) => self.reader.consume_noshift(len),
                // At the end of the input next() reports Eof (clean) or UnexpectedEof
                // (a partial record), so refilling cannot loop forever.
                Action::Refill => self.reader.refill().map_err(|_| PcapSourceError::Damaged {
                    offset,
                    gzip,
                    detail: "read error (for gzip: corrupt compressed data)".into(),
                })?,
                Action::Fail(e) => return Err(e),
                Action::Packet(len, ts, link, start, caplen) => {
                    self.pending = len;
                    // The block sits at the start of the reader's buffer; its data is
                    // lent from there (re-parsing it would cost a second pass).
                    let data = self
                        .reader
                        .data()
                        .get(start..start.saturating_add(caplen))
                        .unwrap_or_default();
                    return Ok(Some(Packet {
                        ts,
                        link,
                        data,
                        offset,
                    }));
                }
            }
        }
    }
}

enum Action {
    Skip(usize),
    Refill,
    Fail(PcapSourceError),
    /// Block length, timestamp, link type, data start and length within the block.
    Packet(usize, Duration, Result<LinkType, u32>, usize, usize),
}

fn link_of(dlt: i32) -> Result<LinkType, u32> {
    let dlt = dlt as u32;
    LinkType::from_pcap(dlt).ok_or(dlt)
}

fn describe(e: &PcapError<&[u8]>) -> String {
    match e {
        PcapError::HeaderNotRecognized => "unrecognised block".into(),
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("malformed block ({})", kind.description())
        }
        other => format!("{other:?}"),
    }
}

/// Turns a read error into an end of input for the parser, keeping the error so the
/// caller can report it with the byte offset where the readable data ended.
struct ErrorLatch {
    inner: Box<dyn Read + Send>,
    error: Arc<Mutex<Option<io::Error>>>,
}

impl Read for ErrorLatch {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                if let Ok(mut slot) = self.error.lock() {
                    slot.get_or_insert(e);
                }
                Ok(0)
            }
        }
    }
}

fn take_latched(error: &Mutex<Option<io::Error>>) -> Option<String> {
    let e = error.lock().ok()?.take()?;
    Some(if e.kind() == io::ErrorKind::UnexpectedEof {
        "the compressed stream ends early".to_owned()
    } else {
        format!("read failed: {e}")
    })
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..).filter(|r| !r.is_empty()) {
        match reader.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Fills the whole buffer unless the input ends: the parser probes the file format
/// with a single read, which a short read (a pipe, a decompressor) would fail.
struct FillingReader<R>(R);

impl<R: Read> Read for FillingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_up_to(&mut self.0, buf)
    }
}
