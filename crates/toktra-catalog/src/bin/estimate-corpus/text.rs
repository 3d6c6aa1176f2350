//! Realistic text for prompts and answers, and the tokenizer that counts it.
//!
//! The text is sampled from documents on this machine: the READMEs and sources of
//! the crates in the cargo registry (prose mixed with code, like a coding assistant's
//! traffic) and the licence texts Debian ships. Token counts use OpenAI's o200k_base
//! (tiktoken-rs); Anthropic's and Gemini's tokenizers are not public, so the same
//! encoding stands in for them (their counts differ by some percent on English).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use tiktoken_rs::CoreBPE;

pub struct Texts {
    pub bpe: CoreBPE,
    /// Tokenized documents.
    docs: Vec<Vec<u32>>,
}

/// A deterministic generator (splitmix64): the corpus is reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    /// Log-uniform in lo..=hi: as many short answers as long ones per decade.
    pub fn log_range(&mut self, lo: usize, hi: usize) -> usize {
        let l = (lo.max(1) as f64).ln();
        let h = (hi.max(1) as f64).ln();
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (l + (h - l) * u).exp().round() as usize
    }
    pub fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[(self.next_u64() % 16) as usize]))
            .collect()
    }
    pub fn alnum(&mut self, n: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| char::from(A[(self.next_u64() % A.len() as u64) as usize]))
            .collect()
    }
}

fn collect_files(out: &mut Vec<PathBuf>) {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    if let Some(home) = cargo_home
        && let Ok(registries) = std::fs::read_dir(home.join("registry/src"))
    {
        for reg in registries.flatten() {
            let Ok(crates) = std::fs::read_dir(reg.path()) else {
                continue;
            };
            for krate in crates.flatten() {
                for name in ["README.md", "src/lib.rs"] {
                    let p = krate.path().join(name);
                    if p.is_file() {
                        out.push(p);
                    }
                }
            }
        }
    }
    if let Ok(licences) = std::fs::read_dir("/usr/share/common-licenses") {
        out.extend(licences.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
}

impl Texts {
    pub fn load(max_docs: usize, rng: &mut Rng) -> Result<Texts> {
        let bpe = tiktoken_rs::o200k_base().context("loading the o200k_base encoding")?;
        let mut files = Vec::new();
        collect_files(&mut files);
        files.sort();
        files.dedup();
        let mut docs = Vec::new();
        // A reproducible sample of the files (shuffled by the seeded generator).
        for i in (1..files.len()).rev() {
            files.swap(i, rng.range(0, i));
        }
        for f in files {
            if docs.len() >= max_docs {
                break;
            }
            let Ok(text) = std::fs::read_to_string(&f) else {
                continue;
            };
            if text.len() < 3_000 || text.len() > 400_000 {
                continue;
            }
            docs.push(bpe.encode_ordinary(&text));
        }
        if docs.len() < 20 {
            bail!(
                "found only {} text documents (cargo registry READMEs, /usr/share/common-licenses); \
                 build the workspace once so the registry is populated",
                docs.len()
            );
        }
        Ok(Texts { bpe, docs })
    }

    /// A span of about `tokens` tokens of some document, as text, and its exact count.
    pub fn span(&self, rng: &mut Rng, tokens: usize) -> (String, usize) {
        for _ in 0..64 {
            let doc = &self.docs[rng.range(0, self.docs.len() - 1)];
            let want = tokens.min(doc.len());
            let start = rng.range(0, doc.len() - want);
            if let Ok(text) = self.bpe.decode(&doc[start..start + want]) {
                let n = self.count(&text);
                return (text, n);
            }
        }
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(tokens / 10 + 1);
        let n = self.count(&text);
        (text, n)
    }

    pub fn count(&self, text: &str) -> usize {
        self.bpe.encode_ordinary(text).len()
    }

    /// Splits `text` into pieces of `sizes()` tokens each, as a streaming API emits
    /// them; a piece that would cut a UTF-8 character takes the next token too.
    /// Returns (piece, tokens in piece).
    pub fn pieces(&self, text: &str, mut sizes: impl FnMut() -> usize) -> Vec<(String, usize)> {
        let ids = self.bpe.encode_ordinary(text);
        let mut out = Vec::new();
        let mut i = 0;
        while i < ids.len() {
            let mut n = sizes().max(1).min(ids.len() - i);
            loop {
                if let Ok(s) = self.bpe.decode(&ids[i..i + n]) {
                    out.push((s, n));
                    break;
                }
                if i + n >= ids.len() {
                    // Undecodable tail (cannot happen for text that came from a str).
                    out.push((String::new(), n));
                    break;
                }
                n += 1;
            }
            i += n;
        }
        out
    }
}
