//! Any text either parses into a valid policy or yields located problems; never a
//! panic (`secret_relay_fuzz::policy_document`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| secret_relay_fuzz::policy_document(text));
