//! Helpers shared by the integration tests: `mod support;` in a test file brings them in.
//!
//! Each test file uses only part of them, hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod answers;
pub mod archives;
pub mod fake_hub;
pub mod hub_pages;
pub mod measured;
pub mod pty;
pub mod registry;
pub mod sandbox;
