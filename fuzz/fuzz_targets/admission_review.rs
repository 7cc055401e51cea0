//! Any request body is either answered or refused as a bad review; never a panic, and a
//! validating answer never carries a patch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secret_relay_policy::{Mode, Policy, RelayIdentity};
use secret_relay_webhook::{Endpoint, review};

fuzz_target!(|body: &[u8]| {
    let policy = Policy::default();
    let relay = RelayIdentity::default();
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        if let Ok(reviewed) = review(&policy, &relay, &Mode::ControlPlane, endpoint, body)
            && endpoint == Endpoint::Validate
        {
            assert_eq!(reviewed.patch_ops, 0);
        }
    }
});
