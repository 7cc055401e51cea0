//! Any selector that parses displays to a string that parses back to the same
//! selector; where the Go oracle judged the same string, acceptance and every match
//! agree with Kubernetes' `labels.Parse` (`secret_relay_fuzz::selector`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| secret_relay_fuzz::selector(text));
