//! The Toktra agent as a library, used by the Linux CLI and the Windows service.
