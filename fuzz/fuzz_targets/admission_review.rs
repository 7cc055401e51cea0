//! Any request body is either answered or refused as a bad review; never a panic. A
//! validating answer never carries a patch, a mutating one is always allowed, and
//! every answer echoes the uid (`secret_relay_fuzz::admission_review`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| secret_relay_fuzz::admission_review(body));
