//! secret-relay certs.
