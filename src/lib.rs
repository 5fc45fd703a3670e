//! tollgate: an edge gateway built on Pingora with a built-in OAuth2 / JWT token service.
//!
//! The binary (`main.rs`) parses the command line and hands a validated [`config::Config`]
//! to [`server`], which wires the Pingora services. Everything else is plain modules.

#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod control;
pub mod domain;
pub mod dpop;
pub mod idp;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod opaque;
pub mod path;
pub mod provision;
pub mod proxy;
pub mod routes;
pub mod server;
pub mod store;
pub mod token;
pub mod upstream;
