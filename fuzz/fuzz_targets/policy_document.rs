//! Any text either parses into a valid policy or yields located problems; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secret_relay_policy::Policy;

fuzz_target!(|text: &str| {
    if let Err(err) = Policy::from_yaml(text) {
        assert!(!err.problems.is_empty());
    }
});
