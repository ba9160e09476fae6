//! The tenant's intercept callback, as the call logic sees it: a question
//! that is answered later. How it is asked (HTTP, signed like a webhook)
//! is the binary's business, so this crate holds no HTTP client.

use std::future::Future;
use std::pin::Pin;

pub use maskline_engine::store::Intercept;
pub use maskline_events::{InterceptRequest, Verdict};

/// Asks a tenant whether a call may be placed.
pub trait Intercepts: Send + Sync + 'static {
    /// Never fails: a callback that cannot be asked yields its fallback.
    fn ask(
        &self,
        target: Intercept,
        secret: String,
        request: InterceptRequest,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send>>;
}
