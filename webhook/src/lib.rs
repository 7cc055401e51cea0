//! secret-relay webhook.
