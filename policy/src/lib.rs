//! secret-relay policy.
