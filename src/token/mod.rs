//! The token service.

pub mod secret;
