//! secret-relay sandbox.
