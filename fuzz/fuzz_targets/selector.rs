//! Any selector that parses displays to a string that parses back to the same selector.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secret_relay_policy::Selector;

fuzz_target!(|text: &str| {
    if let Ok(selector) = Selector::parse(text) {
        let again = Selector::parse(&selector.to_string()).expect("display output must parse");
        assert_eq!(again.to_string(), selector.to_string());
    }
});
