//! Unit tests of the external-issuer module.
