//! The Windows side of the Toktra agent.
