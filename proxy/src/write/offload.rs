//! Decoding and encoding a write's body off the async workers when it is large, so
//! the workers that serve every cluster's reads never wait on one cluster's body.

use bytes::Bytes;
use secret_relay_policy::Secret;

use super::upstream::encode;
use crate::body::BodyError;

/// Bodies up to this size are decoded on the request's task (microseconds); larger
/// ones on tokio's blocking pool, so the async workers that serve every cluster's
/// reads never wait on one cluster's large body.
pub(super) const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// How many large bodies are decoded at once, relay-wide: more wait their turn (a
/// cluster's rate limit and body limit bound how many it can send).
static LARGE_DECODES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Runs `work` inline, or on the blocking pool when `large` (two at a time,
/// relay-wide); `None` only if the pool task could not run (shutdown).
async fn on_blocking_pool<T: Send + 'static>(
    large: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if !large {
        return Some(work());
    }
    let _permit = LARGE_DECODES.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// Runs `decode` over `body`: inline when small, else on the blocking pool.
pub(super) async fn off_worker<T: Send + 'static>(
    body: &Bytes,
    decode: impl FnOnce(&[u8]) -> Result<T, BodyError> + Send + 'static,
) -> Result<T, BodyError> {
    let body = body.clone();
    on_blocking_pool(body.len() > INLINE_DECODE_BYTES, move || decode(&body))
        .await
        .unwrap_or_else(|| {
            Err(BodyError::BadRequest(
                "the request body could not be decoded".to_owned(),
            ))
        })
}

/// Encodes the judged object for forwarding: on the blocking pool when its body
/// was large (see [`off_worker`]).
pub(super) async fn encode_off_worker(secret: Secret, body_len: usize) -> Vec<u8> {
    // The closure cannot panic (see `encode`); a pool cancelled at shutdown leaves
    // an empty body, which the API server refuses.
    on_blocking_pool(body_len > INLINE_DECODE_BYTES, move || encode(&secret))
        .await
        .unwrap_or_default()
}
