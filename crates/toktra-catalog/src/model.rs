//! The catalog's data model: parsing and validating `catalog.toml`.
//!
//! This file is also compiled into `build.rs` (through `#[path]`), so that a broken
//! embedded catalog fails the build with the same message `Catalog::from_toml` gives.
//! It therefore depends on nothing else in this crate.

use serde::Deserialize;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

/// The layout of `catalog.toml` this build reads.
pub const SUPPORTED_SCHEMA: u32 = 1;

/// The longest DNS name in presentation form, without the trailing dot.
pub const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;
/// Bytes-per-token outside this range is a typo, not a tokenizer.
const RATIO_RANGE: (f64, f64) = (0.5, 64.0);
/// A list price above this (USD per million tokens) is a typo.
const MAX_PRICE: f64 = 10_000.0;

/// What kind of LLM product an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// A model API called by programs (`api.openai.com`).
    Api,
    /// A chat web or desktop app used by people (ChatGPT, Claude).
    Chat,
    /// A coding assistant (GitHub Copilot, Cursor).
    Coding,
    /// A cloud AI platform serving many vendors' models (Bedrock, Vertex AI).
    Platform,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Api,
        Category::Chat,
        Category::Coding,
        Category::Platform,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Api => "api",
            Category::Chat => "chat",
            Category::Coding => "coding",
            Category::Platform => "platform",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// The wire shape of an entry's API, which decides how a streamed response is framed
/// (and so how records and bytes turn into tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ApiShape {
    /// OpenAI chat completions / responses, and the many "OpenAI-compatible" APIs:
    /// one SSE `data:` chunk per token.
    OpenAi,
    /// Anthropic messages: named SSE events, a text delta of a few tokens each.
    Anthropic,
    /// Gemini `streamGenerateContent?alt=sse`: larger chunks of many tokens each.
    Gemini,
    /// Unknown or proprietary (chat apps, coding assistants).
    #[default]
    Other,
}

impl ApiShape {
    pub const ALL: [ApiShape; 4] = [
        ApiShape::OpenAi,
        ApiShape::Anthropic,
        ApiShape::Gemini,
        ApiShape::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiShape::OpenAi => "openai",
            ApiShape::Anthropic => "anthropic",
            ApiShape::Gemini => "gemini",
            ApiShape::Other => "other",
        }
    }
}

impl fmt::Display for ApiShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiShape {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ApiShape::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

/// A name that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name {0:?}")]
pub struct UnknownName(pub String);

/// One LLM product and what the catalog knows about it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// Unique, stable key of the entry (`openai-api`).
    pub id: String,
    /// The company (`openai`), lower-case.
    pub provider: String,
    /// The product as people name it (`ChatGPT`).
    pub product: String,
    pub category: Category,
    pub api_shape: ApiShape,
    /// HTTP request body bytes per input token.
    pub request_bytes_per_token: f64,
    /// HTTP response body bytes per output token (non-streamed framing).
    pub response_bytes_per_token: f64,
    /// List price, USD per million input tokens, for `price_model`.
    pub price_input_per_mtok: Option<f64>,
    /// List price, USD per million output tokens, for `price_model`.
    pub price_output_per_mtok: Option<f64>,
    /// The model the list prices are for.
    pub price_model: Option<String>,
    /// The host rules, normalized (lower-case, no trailing dot).
    pub hosts: Vec<String>,
    /// What the entry's API shape wraps around the tokens (the catalog's
    /// `[shape.<api_shape>]` table), for the estimators.
    pub profile: ShapeProfile,
}

/// What an API shape adds around the tokens: headers, JSON envelopes, SSE events.
/// Measured on the captured corpus (`scripts/bench-estimate` prints the raw figures as
/// "calibration") and kept in `catalog.toml` as `[shape.<name>]`, so a recalibration
/// is a data edit with a new catalog version, not a code change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShapeProfile {
    /// One request's headers as the official SDK sends them (HTTP/1.1, HTTP/2).
    pub request_header_bytes: (u64, u64),
    /// The response headers the service sends (HTTP/1.1, HTTP/2).
    pub response_header_bytes: (u64, u64),
    /// A plain JSON response's bytes other than the answer text.
    pub plain_envelope_bytes: u64,
    /// Events of a stream that carry no text (start, stop, usage, `[DONE]`) ...
    pub stream_framing_records: u64,
    /// ... and their bytes.
    pub stream_framing_bytes: u64,
    /// Bytes of one content event that are not its text (SSE line, JSON envelope).
    pub event_envelope_bytes: u64,
    /// Tokens of text one content event carries, on average.
    pub tokens_per_event: f64,
    /// How far the count of server records, rather than the bytes at
    /// `tokens_per_event`, decides how many content events a stream had: 0 trusts
    /// the bytes (a steady number of tokens per event under a large envelope:
    /// OpenAI, Anthropic), 1 the records (few, large, uneven events: Gemini).
    pub events_from_records: f64,
}

impl ShapeProfile {
    /// For a shape the catalog has no `[shape.*]` table for: values between the
    /// measured shapes. A guide, not a calibration.
    pub const GUIDE: ShapeProfile = ShapeProfile {
        request_header_bytes: (600, 530),
        response_header_bytes: (900, 680),
        plain_envelope_bytes: 500,
        stream_framing_records: 3,
        stream_framing_bytes: 600,
        event_envelope_bytes: 200,
        tokens_per_event: 1.0,
        events_from_records: 0.5,
    };
}

/// Why the catalog file was refused. Each names the entry (by position and id) so the
/// fix is one search away.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog is not valid TOML or has an unexpected field: {0}")]
    Syntax(String),
    #[error("catalog schema {found} is not supported; this build reads schema {supported}")]
    UnsupportedSchema { found: u32, supported: u32 },
    #[error("catalog `version` is empty; set it to the date of the edit, e.g. \"2026.11.26\"")]
    EmptyVersion,
    #[error("catalog has no [[entry]]")]
    NoEntries,
    #[error("catalog entry #{index} ({id:?}): {problem}")]
    Entry {
        /// 1-based position of the `[[entry]]` in the file.
        index: usize,
        id: String,
        problem: EntryProblem,
    },
    #[error("entry id {id:?} is used by entries #{first} and #{second}")]
    DuplicateId {
        id: String,
        first: usize,
        second: usize,
    },
    #[error("[shape.{shape}]: {problem}")]
    Shape {
        shape: String,
        problem: ShapeProblem,
    },
    #[error("host rule {rule:?} appears in entry {first:?} and again in entry {second:?}")]
    DuplicateRule {
        rule: String,
        first: String,
        second: String,
    },
}

/// What is wrong with one entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EntryProblem {
    #[error("`{0}` is empty")]
    EmptyField(&'static str),
    #[error("`{field}` = {value:?} must be lower-case letters, digits and '-'")]
    BadKey { field: &'static str, value: String },
    #[error("category {0:?} is not one of api, chat, coding, platform")]
    BadCategory(String),
    #[error("api_shape {0:?} is not one of openai, anthropic, gemini, other")]
    BadApiShape(String),
    #[error("`{field}` = {value} is outside 0.5..=64 bytes per token")]
    BadRatio { field: &'static str, value: f64 },
    #[error("`{field}` = {value} is not a price (0..=10000 USD per million tokens)")]
    BadPrice { field: &'static str, value: f64 },
    #[error("prices are given without `price_model`; name the model they are for")]
    PriceWithoutModel,
    #[error("`hosts` is empty")]
    NoHosts,
    #[error("host rule {rule:?}: {reason}")]
    BadRule { rule: String, reason: RuleProblem },
}

/// What is wrong with one `[shape.*]` table.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeProblem {
    #[error("is not an API shape; use one of openai, anthropic, gemini, other")]
    UnknownShape,
    #[error("`{field}` = {value} is outside {min}..={max}")]
    OutOfRange {
        field: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
}

/// What is wrong with one host rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleProblem {
    #[error("is empty")]
    Empty,
    #[error("is longer than 253 characters")]
    TooLong,
    #[error("has an empty label (\"..\")")]
    EmptyLabel,
    #[error("has a label longer than 63 characters")]
    LabelTooLong,
    #[error("has a character other than a-z, 0-9, '-', '_' or a leading '*'")]
    BadCharacter,
    #[error("needs at least two literal labels on the right, e.g. \"*.example.com\"")]
    TooBroad,
    #[error("is an IP address; the catalog matches names only")]
    IpAddress,
}

/// One label of a host rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelPattern {
    Literal(String),
    /// `*`: exactly one label, any content.
    Any,
    /// `*suffix`: one label that ends in `suffix` and is longer than it.
    EndsWith(String),
}

/// A host rule after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// Normalized text, as written in `Entry::hosts`.
    pub text: String,
    /// Left to right, as written.
    pub labels: Vec<LabelPattern>,
    /// A leading `.`: one or more further labels on the left, never zero.
    pub subdomains: bool,
}

/// How specific a rule is. When several rules match a host, the greatest wins:
///
/// 1. an exact name (no wildcard, not a subdomain rule) beats any pattern;
/// 2. then more literal labels beat fewer;
/// 3. then fewer wildcard labels (`*` or `*suffix`) beat more;
/// 4. then more literal characters inside `*suffix` labels beat fewer;
/// 5. then a fixed-depth rule (`*.x.com`) beats a subdomain rule (`.x.com`);
/// 6. a remaining tie goes to the rule with a literal label where the other has a
///    wildcard, at the rightmost position where they differ (the matcher walks
///    right to left and tries literals first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Specificity {
    pub exact_name: bool,
    pub literal_labels: u16,
    pub wildcard_labels: u16,
    pub partial_literal_chars: u16,
    pub fixed_depth: bool,
}

impl Ord for Specificity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.exact_name
            .cmp(&other.exact_name)
            .then(self.literal_labels.cmp(&other.literal_labels))
            .then(other.wildcard_labels.cmp(&self.wildcard_labels))
            .then(self.partial_literal_chars.cmp(&other.partial_literal_chars))
            .then(self.fixed_depth.cmp(&other.fixed_depth))
    }
}

impl PartialOrd for Specificity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn clamp_u16(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

impl HostRule {
    /// Parses one rule as written in `hosts`.
    pub fn parse(text: &str) -> Result<HostRule, RuleProblem> {
        let lower = text.trim().to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        let (subdomains, body) = match lower.strip_prefix('.') {
            Some(rest) => (true, rest),
            None => (false, lower),
        };
        if body.is_empty() {
            return Err(RuleProblem::Empty);
        }
        if body.len() > MAX_HOST_LEN {
            return Err(RuleProblem::TooLong);
        }
        if body.parse::<std::net::IpAddr>().is_ok() {
            return Err(RuleProblem::IpAddress);
        }
        let mut labels = Vec::new();
        for label in body.split('.') {
            if label.is_empty() {
                return Err(RuleProblem::EmptyLabel);
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(RuleProblem::LabelTooLong);
            }
            let (wild, rest) = match label.strip_prefix('*') {
                Some(rest) => (true, rest),
                None => (false, label),
            };
            if !rest.bytes().all(is_label_byte) {
                return Err(RuleProblem::BadCharacter);
            }
            labels.push(match (wild, rest.is_empty()) {
                (true, true) => LabelPattern::Any,
                (true, false) => LabelPattern::EndsWith(rest.to_owned()),
                (false, _) => LabelPattern::Literal(rest.to_owned()),
            });
        }
        // The two rightmost labels must be literal and the top one must not be all
        // digits: this rules out catch-alls such as "*.com" or ".co.uk"-like mistakes
        // and keeps IP-looking names from ever matching.
        let n = labels.len();
        let right_literal = n >= 2
            && labels[n - 2..]
                .iter()
                .all(|l| matches!(l, LabelPattern::Literal(_)));
        if !right_literal {
            return Err(RuleProblem::TooBroad);
        }
        if let Some(LabelPattern::Literal(tld)) = labels.last()
            && tld.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(RuleProblem::IpAddress);
        }
        let text = if subdomains {
            format!(".{body}")
        } else {
            body.to_owned()
        };
        Ok(HostRule {
            text,
            labels,
            subdomains,
        })
    }

    pub fn specificity(&self) -> Specificity {
        let literal = self
            .labels
            .iter()
            .filter(|l| matches!(l, LabelPattern::Literal(_)))
            .count();
        let wildcards = self.labels.len() - literal;
        let partial: usize = self
            .labels
            .iter()
            .map(|l| match l {
                LabelPattern::EndsWith(s) => s.len(),
                _ => 0,
            })
            .sum();
        Specificity {
            exact_name: wildcards == 0 && !self.subdomains,
            literal_labels: clamp_u16(literal),
            wildcard_labels: clamp_u16(wildcards),
            partial_literal_chars: clamp_u16(partial),
            fixed_depth: !self.subdomains,
        }
    }
}

/// Bytes allowed in a DNS label (underscore appears in real service names).
pub fn is_label_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    schema: u32,
    version: String,
    #[serde(default)]
    shape: BTreeMap<String, RawShape>,
    #[serde(default)]
    entry: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShape {
    request_header_bytes: [u64; 2],
    response_header_bytes: [u64; 2],
    plain_envelope_bytes: u64,
    stream_framing_records: u64,
    stream_framing_bytes: u64,
    event_envelope_bytes: u64,
    tokens_per_event: f64,
    events_from_records: f64,
}

/// Bytes of framing or headers above this are a typo.
const MAX_SHAPE_BYTES: u64 = 64 * 1024;

fn check_shape(raw: &RawShape) -> Result<ShapeProfile, ShapeProblem> {
    let bytes = [
        ("request_header_bytes", raw.request_header_bytes[0]),
        ("request_header_bytes", raw.request_header_bytes[1]),
        ("response_header_bytes", raw.response_header_bytes[0]),
        ("response_header_bytes", raw.response_header_bytes[1]),
        ("plain_envelope_bytes", raw.plain_envelope_bytes),
        ("stream_framing_bytes", raw.stream_framing_bytes),
        ("event_envelope_bytes", raw.event_envelope_bytes),
    ];
    for (field, value) in bytes {
        if value > MAX_SHAPE_BYTES {
            return Err(ShapeProblem::OutOfRange {
                field,
                value: value as f64,
                min: 0.0,
                max: MAX_SHAPE_BYTES as f64,
            });
        }
    }
    let reals = [
        (
            "stream_framing_records",
            raw.stream_framing_records as f64,
            0.0,
            64.0,
        ),
        ("tokens_per_event", raw.tokens_per_event, 0.1, 1_000.0),
        ("events_from_records", raw.events_from_records, 0.0, 1.0),
    ];
    for (field, value, min, max) in reals {
        if !(value.is_finite() && (min..=max).contains(&value)) {
            return Err(ShapeProblem::OutOfRange {
                field,
                value,
                min,
                max,
            });
        }
    }
    Ok(ShapeProfile {
        request_header_bytes: (raw.request_header_bytes[0], raw.request_header_bytes[1]),
        response_header_bytes: (raw.response_header_bytes[0], raw.response_header_bytes[1]),
        plain_envelope_bytes: raw.plain_envelope_bytes,
        stream_framing_records: raw.stream_framing_records,
        stream_framing_bytes: raw.stream_framing_bytes,
        event_envelope_bytes: raw.event_envelope_bytes,
        tokens_per_event: raw.tokens_per_event,
        events_from_records: raw.events_from_records,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    #[serde(default)]
    id: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    category: String,
    api_shape: Option<String>,
    request_bytes_per_token: f64,
    response_bytes_per_token: f64,
    price_model: Option<String>,
    price_input_per_mtok: Option<f64>,
    price_output_per_mtok: Option<f64>,
    #[serde(default)]
    hosts: Vec<String>,
}

/// A validated catalog file: entries and their parsed rules, in file order.
#[derive(Debug, Clone)]
pub struct ParsedCatalog {
    pub schema: u32,
    pub version: String,
    pub entries: Vec<Entry>,
    /// (entry index, rule) for every rule of every entry.
    pub rules: Vec<(usize, HostRule)>,
}

fn is_key(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_entry(raw: RawEntry) -> Result<(Entry, Vec<HostRule>), EntryProblem> {
    for (field, value) in [
        ("id", &raw.id),
        ("provider", &raw.provider),
        ("product", &raw.product),
        ("category", &raw.category),
    ] {
        if value.trim().is_empty() {
            return Err(EntryProblem::EmptyField(field));
        }
    }
    for (field, value) in [("id", &raw.id), ("provider", &raw.provider)] {
        if !is_key(value) {
            return Err(EntryProblem::BadKey {
                field,
                value: value.clone(),
            });
        }
    }
    let category = raw
        .category
        .parse::<Category>()
        .map_err(|e| EntryProblem::BadCategory(e.0))?;
    let api_shape = match &raw.api_shape {
        Some(s) => s
            .parse::<ApiShape>()
            .map_err(|e| EntryProblem::BadApiShape(e.0))?,
        None => ApiShape::Other,
    };
    for (field, value) in [
        ("request_bytes_per_token", raw.request_bytes_per_token),
        ("response_bytes_per_token", raw.response_bytes_per_token),
    ] {
        if !(value.is_finite() && (RATIO_RANGE.0..=RATIO_RANGE.1).contains(&value)) {
            return Err(EntryProblem::BadRatio { field, value });
        }
    }
    for (field, value) in [
        ("price_input_per_mtok", raw.price_input_per_mtok),
        ("price_output_per_mtok", raw.price_output_per_mtok),
    ] {
        if let Some(value) = value
            && !(value.is_finite() && (0.0..=MAX_PRICE).contains(&value))
        {
            return Err(EntryProblem::BadPrice { field, value });
        }
    }
    let priced = raw.price_input_per_mtok.is_some() || raw.price_output_per_mtok.is_some();
    let price_model = raw.price_model.filter(|m| !m.trim().is_empty());
    if priced && price_model.is_none() {
        return Err(EntryProblem::PriceWithoutModel);
    }
    if raw.hosts.is_empty() {
        return Err(EntryProblem::NoHosts);
    }
    let mut rules = Vec::with_capacity(raw.hosts.len());
    for text in &raw.hosts {
        let rule = HostRule::parse(text).map_err(|reason| EntryProblem::BadRule {
            rule: text.clone(),
            reason,
        })?;
        rules.push(rule);
    }
    let entry = Entry {
        id: raw.id,
        provider: raw.provider,
        product: raw.product.trim().to_owned(),
        category,
        api_shape,
        request_bytes_per_token: raw.request_bytes_per_token,
        response_bytes_per_token: raw.response_bytes_per_token,
        price_input_per_mtok: raw.price_input_per_mtok,
        price_output_per_mtok: raw.price_output_per_mtok,
        price_model,
        hosts: rules.iter().map(|r| r.text.clone()).collect(),
        // Filled in by parse_catalog once the [shape.*] tables are read.
        profile: ShapeProfile::GUIDE,
    };
    Ok((entry, rules))
}

/// Parses and validates a catalog file.
pub fn parse_catalog(text: &str) -> Result<ParsedCatalog, CatalogError> {
    let raw: RawCatalog = toml::from_str(text).map_err(|e| CatalogError::Syntax(e.to_string()))?;
    if raw.schema != SUPPORTED_SCHEMA {
        return Err(CatalogError::UnsupportedSchema {
            found: raw.schema,
            supported: SUPPORTED_SCHEMA,
        });
    }
    if raw.version.trim().is_empty() {
        return Err(CatalogError::EmptyVersion);
    }
    if raw.entry.is_empty() {
        return Err(CatalogError::NoEntries);
    }
    let mut profiles: HashMap<ApiShape, ShapeProfile> = HashMap::new();
    for (name, raw_shape) in &raw.shape {
        let shape_error = |problem| CatalogError::Shape {
            shape: name.clone(),
            problem,
        };
        let shape = name
            .parse::<ApiShape>()
            .map_err(|_| shape_error(ShapeProblem::UnknownShape))?;
        profiles.insert(shape, check_shape(raw_shape).map_err(shape_error)?);
    }
    let mut entries = Vec::with_capacity(raw.entry.len());
    let mut rules = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut seen_rules: HashMap<String, String> = HashMap::new();
    for (i, raw_entry) in raw.entry.into_iter().enumerate() {
        let index = i + 1;
        let id = raw_entry.id.clone();
        let (mut entry, entry_rules) =
            check_entry(raw_entry).map_err(|problem| CatalogError::Entry {
                index,
                id: id.clone(),
                problem,
            })?;
        entry.profile = profiles
            .get(&entry.api_shape)
            .copied()
            .unwrap_or(ShapeProfile::GUIDE);
        if let Some(&first) = ids.get(&entry.id) {
            return Err(CatalogError::DuplicateId {
                id,
                first,
                second: index,
            });
        }
        ids.insert(entry.id.clone(), index);
        for rule in entry_rules {
            if let Some(owner) = seen_rules.get(&rule.text) {
                return Err(CatalogError::DuplicateRule {
                    rule: rule.text,
                    first: owner.clone(),
                    second: entry.id.clone(),
                });
            }
            seen_rules.insert(rule.text.clone(), entry.id.clone());
            rules.push((i, rule));
        }
        entries.push(entry);
    }
    Ok(ParsedCatalog {
        schema: raw.schema,
        version: raw.version.trim().to_owned(),
        entries,
        rules,
    })
}
