//! Intercept callbacks over HTTP: the SIP crate asks through the
//! [`Intercepts`] trait, and this edge answers with the webhook client.

use std::future::Future;
use std::pin::Pin;

use maskline_callbacks::{Guard, Interceptor};
use maskline_events::{InterceptRequest, Verdict};
use maskline_sip::Intercepts;
use maskline_store::Intercept;

pub struct HttpIntercepts(Interceptor);

impl HttpIntercepts {
    pub fn new(guard: Guard) -> Result<HttpIntercepts, maskline_callbacks::Error> {
        Interceptor::new(guard).map(HttpIntercepts)
    }
}

impl Intercepts for HttpIntercepts {
    fn ask(
        &self,
        target: Intercept,
        secret: String,
        request: InterceptRequest,
    ) -> Pin<Box<dyn Future<Output = Verdict> + Send>> {
        let interceptor = self.0.clone();
        Box::pin(async move { interceptor.ask(&target, &secret, &request).await.0 })
    }
}
