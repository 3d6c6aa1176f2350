//! Server-side classification. The server's catalog is often newer than an agent's, so
//! every event is re-classified by its host name and priced from the catalog's list
//! prices. Events the catalog does not know keep the agent's classification (a newer
//! agent may know more) and cost nothing.

use crate::store::StoredEvent;
use toktra_catalog::Catalog;
use toktra_proto::FlowEvent;

pub fn classify(e: FlowEvent) -> StoredEvent {
    // With ECH the SNI is the outer, public name (e.g. cloudflare-ech.com): never
    // attribute it; the agent's own attribution (extension, DNS) stands.
    let host = if e.ech { None } else { e.sni.as_deref() };
    let entry = host.and_then(|h| Catalog::embedded().lookup(h.trim_end_matches('.')));
    match entry {
        Some(entry) => {
            let per_million =
                |tokens: u64, price: Option<f64>| tokens as f64 / 1e6 * price.unwrap_or(0.0);
            let cost_usd = per_million(e.est_input_tokens, entry.price_input_per_mtok)
                + per_million(e.est_output_tokens, entry.price_output_per_mtok);
            StoredEvent {
                provider: Some(entry.provider.clone()),
                product: Some(entry.product.clone()),
                category: Some(entry.category.as_str().to_owned()),
                cost_usd,
                event: e,
            }
        }
        None => StoredEvent {
            provider: e.provider.clone(),
            product: e.product.clone(),
            category: e.category.clone(),
            cost_usd: 0.0,
            event: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(sni: &str, ech: bool) -> FlowEvent {
        FlowEvent {
            sni: Some(sni.into()),
            ech,
            provider: Some("agent-says".into()),
            product: Some("Agent Product".into()),
            est_input_tokens: 1_000_000,
            est_output_tokens: 1_000_000,
            ..FlowEvent::example("alice")
        }
    }

    #[test]
    fn the_server_catalog_wins_and_prices() {
        let entry = Catalog::embedded()
            .lookup("api.openai.com")
            .expect("catalog knows OpenAI");
        let s = classify(ev("api.openai.com", false));
        assert_eq!(s.provider.as_deref(), Some(entry.provider.as_str()));
        assert_eq!(s.product.as_deref(), Some(entry.product.as_str()));
        let expected =
            entry.price_input_per_mtok.unwrap_or(0.0) + entry.price_output_per_mtok.unwrap_or(0.0);
        assert!((s.cost_usd - expected).abs() < 1e-9);

        let unknown = classify(ev("example.invalid", false));
        assert_eq!(unknown.provider.as_deref(), Some("agent-says"));
        assert_eq!(unknown.cost_usd, 0.0);
        let ech = classify(ev("api.openai.com", true));
        assert_eq!(
            ech.provider.as_deref(),
            Some("agent-says"),
            "outer SNI is not attributed"
        );
    }
}
