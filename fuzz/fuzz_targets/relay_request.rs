//! The relay's request parsing: `METHOD\nTARGET\nCONTENT-TYPE\nBODY` through routing,
//! query parsing, list and watch parameters and patch application; never a panic,
//! and nothing outside Secrets in the control-plane namespace reaches the Secrets
//! surface (`secret_relay_fuzz::relay_request`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| secret_relay_fuzz::relay_request(data));
