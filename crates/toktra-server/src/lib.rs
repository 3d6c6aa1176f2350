//! The Toktra backend as a library.
