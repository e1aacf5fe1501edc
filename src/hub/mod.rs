//! Docker Hub's API: its URLs, tolerant serde types of its answers, and the rules that turn a tag
//! object into digest facts.
//!
//! This module knows Docker Hub's shapes and nothing about the store or the network stack; the
//! crawl scheduler connects the three.

mod api;
mod page;
mod tag;

pub use api::{HubApi, HubUrlError, OffHostError, redact_userinfo};
pub use page::{ImageEntry, Page, PageError, RepoEntry, TagEntry, parse_page};
pub use tag::{DigestFact, Skips, TagObservation, observe_tag};

/// Largest page size Hub serves; bigger requests are silently clamped by Hub.
pub const PAGE_SIZE: u32 = 100;
