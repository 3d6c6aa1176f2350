//! Server-side classification. The server's catalog is newer than many agents', so it
//! re-classifies every event by its host name.
//!
//! TODO-free note: until `toktra-catalog` exposes its lookup and prices, the agent's own
//! classification is kept and cost is 0; `classify` is the one place to change.

use crate::store::StoredEvent;
use toktra_proto::FlowEvent;

pub fn classify(e: FlowEvent) -> StoredEvent {
    StoredEvent {
        provider: e.provider.clone(),
        product: e.product.clone(),
        category: e.category.clone(),
        cost_usd: 0.0,
        event: e,
    }
}
