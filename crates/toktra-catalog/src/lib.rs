//! The LLM provider catalog.
