//! Validates catalog.toml at build time with the crate's own parser, so a broken
//! catalog stops the build with a message naming the entry, and the embedded catalog
//! is known good at run time.

#[allow(dead_code)]
#[path = "src/model.rs"]
mod model;

fn main() {
    println!("cargo::rerun-if-changed=catalog.toml");
    println!("cargo::rerun-if-changed=src/model.rs");
    let text = match std::fs::read_to_string("catalog.toml") {
        Ok(t) => t,
        Err(e) => {
            println!("cargo::error=cannot read crates/toktra-catalog/catalog.toml: {e}");
            return;
        }
    };
    if let Err(e) = model::parse_catalog(&text) {
        println!("cargo::error=crates/toktra-catalog/catalog.toml: {e}");
    }
}
