//! The LLM provider catalog: which hostnames belong to which LLM product, how many
//! bytes a token takes on each, what the products cost, and token estimates from
//! connection metadata.
//!
//! ```
//! use toktra_catalog::{Catalog, Category};
//! let catalog = Catalog::embedded();
//! let entry = catalog.lookup("API.OpenAI.com.").expect("in the catalog");
//! assert_eq!(entry.provider, "openai");
//! assert_eq!(entry.category, Category::Api);
//! assert!(catalog.lookup("example.com").is_none());
//! ```
//!
//! The catalog is `catalog.toml`, embedded with `include_str!` and parsed on first use.
//! Why not generate static tables in build.rs: the whole parse and index build takes
//! about a millisecond, once per process (the `lookup` bench measures it: 1.3 ms on a
//! busy 2-core machine), while
//! generated tables would need a second, static representation of the trie (or a
//! perfect-hash crate) and the server's hot-loadable newer catalogs would still need
//! the runtime parser. build.rs does run the same validation, so a broken embedded
//! catalog fails the build, naming the entry, and [`Catalog::embedded`] cannot fail.

mod estimate;
mod index;
mod model;

pub use estimate::{
    CLIENT_HANDSHAKE_BYTES, EVENT_TRANSFER_BYTES_H1, EVENT_TRANSFER_BYTES_H2, FlowBytes,
    FlowOverhead, HttpVersion, OutputMethod, QUIC_CLIENT_HANDSHAKE_BYTES, QUIC_DATAGRAM_PAYLOAD,
    QUIC_PACKET_OVERHEAD, QUIC_SERVER_AFTER_HANDSHAKE_BYTES, QUIC_SERVER_HANDSHAKE_BYTES,
    QUIC_STREAM_OVERHEAD, SERVER_HANDSHAKE_BYTES, SERVER_HANDSHAKE_RECORDS,
    SERVER_OVERHEAD_RECORDS_H1, SERVER_OVERHEAD_RECORDS_H2, SERVER_TICKET_BYTES,
    STREAM_MAX_MEAN_RECORD, STREAM_MIN_EXTRA_RECORDS, TLS_RECORD_OVERHEAD, TokenEstimate, estimate,
    input_tokens_by_bytes, looks_streamed, output_tokens_by_bytes, output_tokens_by_records,
    output_tokens_streamed, request_body_bytes, response_body_bytes,
};
pub use model::{
    ApiShape, CatalogError, Category, Entry, EntryProblem, RuleProblem, SUPPORTED_SCHEMA,
    ShapeProblem, ShapeProfile, Specificity, UnknownName,
};

use index::Index;
use std::sync::OnceLock;

/// The catalog compiled into this build.
pub const EMBEDDED_TOML: &str = include_str!("../catalog.toml");

/// A parsed, validated, indexed catalog.
#[derive(Debug)]
pub struct Catalog {
    schema: u32,
    version: String,
    entries: Vec<Entry>,
    /// Rule texts by rule id, parallel to the index's rules.
    rule_texts: Vec<String>,
    index: Index,
}

/// The result of a lookup: the entry and the rule that matched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match<'a> {
    pub entry: &'a Entry,
    /// The matching rule as written in the catalog (normalized).
    pub rule: &'a str,
}

impl Catalog {
    /// The catalog embedded at build time, parsed once per process.
    pub fn embedded() -> &'static Catalog {
        static EMBEDDED: OnceLock<Catalog> = OnceLock::new();
        // build.rs validated EMBEDDED_TOML with this same parser, so the error arm is
        // unreachable in a built crate; an empty catalog (matching nothing) is the
        // safe answer rather than a panic in a library.
        EMBEDDED
            .get_or_init(|| Catalog::from_toml(EMBEDDED_TOML).unwrap_or_else(|_| Catalog::empty()))
    }

    /// Parses and validates a catalog file (e.g. a newer one fetched by the server).
    pub fn from_toml(text: &str) -> Result<Catalog, CatalogError> {
        let parsed = model::parse_catalog(text)?;
        let index = Index::build(&parsed.rules).map_err(|e| CatalogError::Syntax(e.to_string()))?;
        Ok(Catalog {
            schema: parsed.schema,
            version: parsed.version,
            entries: parsed.entries,
            rule_texts: parsed.rules.into_iter().map(|(_, r)| r.text).collect(),
            index,
        })
    }

    fn empty() -> Catalog {
        Catalog {
            schema: SUPPORTED_SCHEMA,
            version: String::new(),
            entries: Vec::new(),
            rule_texts: Vec::new(),
            index: Index::empty(),
        }
    }

    /// The entry of the most specific rule matching `host` (see [`Specificity`]).
    /// Case-insensitive, a trailing dot ignored; `None` for unknown names, IP
    /// literals and the empty string. Does not allocate.
    pub fn lookup(&self, host: &str) -> Option<&Entry> {
        self.lookup_match(host).map(|m| m.entry)
    }

    /// Like [`Catalog::lookup`], also naming the rule that matched.
    pub fn lookup_match(&self, host: &str) -> Option<Match<'_>> {
        let (entry, rule) = self.index.lookup(host)?;
        Some(Match {
            entry: self.entries.get(entry)?,
            rule: self.rule_texts.get(rule)?,
        })
    }

    /// The content version of the catalog file (`version = "..."`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The layout version of the catalog file (`schema = N`).
    pub fn schema(&self) -> u32 {
        self.schema
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry with this id.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// The number of host rules indexed.
    pub fn rule_count(&self) -> usize {
        self.index.rule_count()
    }
}
