//! The host-rule index: a trie over labels read right to left.
//!
//! A lookup walks at most one node per label of the host, doing one hash probe per
//! node, so its cost depends on the host's depth, not on the number of rules. It
//! branches only where a wildcard (`*` or `*suffix`) sits beside a literal, which
//! real catalogs have at a handful of nodes. No allocation: the host is lower-cased
//! into a stack buffer and its labels are slices of it.

use crate::model::{HostRule, LabelPattern, MAX_HOST_LEN, Specificity};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// FNV-1a: labels are short, trusted-size keys, where SipHash's DoS resistance buys
/// nothing (the keys are the catalog's, a lookup only probes) and costs most of the
/// lookup time.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// A DNS name has at most 127 labels (253 characters, one-character labels).
const MAX_LABELS: usize = MAX_HOST_LEN.div_ceil(2);

#[derive(Default, Debug)]
struct Node {
    literal: FnvMap<Box<str>, u32>,
    /// `*suffix` labels at this position: (suffix, child).
    ends_with: Vec<(Box<str>, u32)>,
    any: Option<u32>,
    /// A rule whose labels end here (fixed depth).
    terminal: Option<u32>,
    /// A subdomain rule (`.x.com`) rooted here: matches when labels remain.
    subdomains: Option<u32>,
}

#[derive(Debug)]
struct IndexedRule {
    entry: u32,
    spec: Specificity,
}

/// The compiled index of every host rule of a catalog.
#[derive(Debug)]
pub(crate) struct Index {
    nodes: Vec<Node>,
    rules: Vec<IndexedRule>,
}

/// Indexes are built from validated rules; these are the only failures left.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IndexError {
    #[error("more than u32::MAX rules or nodes")]
    TooLarge,
}

impl Index {
    /// Builds the index. `rules` are (entry index, rule); validation already rejected
    /// duplicate rule texts, so two rules never land on the same terminal slot.
    pub(crate) fn build(rules: &[(usize, HostRule)]) -> Result<Index, IndexError> {
        let mut index = Index {
            nodes: vec![Node::default()],
            rules: Vec::with_capacity(rules.len()),
        };
        for (entry, rule) in rules {
            let rule_id = u32::try_from(index.rules.len()).map_err(|_| IndexError::TooLarge)?;
            index.rules.push(IndexedRule {
                entry: u32::try_from(*entry).map_err(|_| IndexError::TooLarge)?,
                spec: rule.specificity(),
            });
            let mut node = 0usize;
            for label in rule.labels.iter().rev() {
                node = index.child(node, label)?;
            }
            let slot = if rule.subdomains {
                &mut index.nodes[node].subdomains
            } else {
                &mut index.nodes[node].terminal
            };
            // Validation guarantees uniqueness; keep the first on a (impossible) clash
            // rather than fail, so a lookup stays deterministic.
            if slot.is_none() {
                *slot = Some(rule_id);
            }
        }
        Ok(index)
    }

    fn child(&mut self, node: usize, label: &LabelPattern) -> Result<usize, IndexError> {
        let next = u32::try_from(self.nodes.len()).map_err(|_| IndexError::TooLarge)?;
        let existing = match label {
            LabelPattern::Literal(s) => self.nodes[node].literal.get(s.as_str()).copied(),
            LabelPattern::Any => self.nodes[node].any,
            LabelPattern::EndsWith(s) => self.nodes[node]
                .ends_with
                .iter()
                .find(|(k, _)| **k == **s)
                .map(|(_, c)| *c),
        };
        if let Some(c) = existing {
            return Ok(c as usize);
        }
        self.nodes.push(Node::default());
        let parent = &mut self.nodes[node];
        match label {
            LabelPattern::Literal(s) => {
                parent.literal.insert(s.as_str().into(), next);
            }
            LabelPattern::Any => parent.any = Some(next),
            LabelPattern::EndsWith(s) => parent.ends_with.push((s.as_str().into(), next)),
        }
        Ok(next as usize)
    }

    pub(crate) fn empty() -> Index {
        Index {
            nodes: vec![Node::default()],
            rules: Vec::new(),
        }
    }

    pub(crate) fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The entry index and rule id of the most specific rule matching `host`.
    pub(crate) fn lookup(&self, host: &str) -> Option<(usize, usize)> {
        let mut buf = [0u8; MAX_HOST_LEN];
        let name = normalize(host, &mut buf)?;
        let mut labels: [&str; MAX_LABELS] = [""; MAX_LABELS];
        let mut n = 0;
        for label in name.split('.') {
            if label.is_empty() || n == MAX_LABELS {
                return None;
            }
            labels[n] = label;
            n += 1;
        }
        let mut best: Option<u32> = None;
        self.walk(0, &labels[..n], &mut best);
        let rule = best? as usize;
        let entry = self.rules.get(rule)?.entry as usize;
        Some((entry, rule))
    }

    /// `labels` are the host's labels not yet consumed, left to right; the walk eats
    /// them from the right. Literal children are tried before wildcards, so among
    /// equally specific rules the one with a literal further right is found first
    /// and kept (`consider` only replaces on strictly greater specificity).
    fn walk(&self, node: usize, labels: &[&str], best: &mut Option<u32>) {
        let Some(nd) = self.nodes.get(node) else {
            return;
        };
        let Some((label, rest)) = labels.split_last() else {
            if let Some(r) = nd.terminal {
                self.consider(r, best);
            }
            return;
        };
        if let Some(r) = nd.subdomains {
            self.consider(r, best);
        }
        if let Some(&c) = nd.literal.get(*label) {
            self.walk(c as usize, rest, best);
        }
        for (suffix, c) in &nd.ends_with {
            if label.len() > suffix.len() && label.ends_with(&**suffix) {
                self.walk(*c as usize, rest, best);
            }
        }
        if let Some(c) = nd.any {
            self.walk(c as usize, rest, best);
        }
    }

    fn consider(&self, rule: u32, best: &mut Option<u32>) {
        let Some(candidate) = self.rules.get(rule as usize) else {
            return;
        };
        let better = match best.and_then(|b| self.rules.get(b as usize)) {
            None => true,
            Some(current) => candidate.spec > current.spec,
        };
        if better {
            *best = Some(rule);
        }
    }
}

/// Lower-cases `host` into `buf` and drops one trailing dot. `None` for what can never
/// match: empty, too long, non-ASCII (SNI carries A-labels), or an IP literal.
fn normalize<'a>(host: &str, buf: &'a mut [u8; MAX_HOST_LEN]) -> Option<&'a str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST_LEN || !host.is_ascii() {
        return None;
    }
    // An IPv6 literal always has a ':'; an IPv4 one parses. Rules never end in a
    // numeric label, so this is about clarity more than correctness.
    if host.contains(':') || host.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    let out = buf.get_mut(..host.len())?;
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}
