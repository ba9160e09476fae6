//! A real webhook receiver on loopback: an HTTP server in the test process
//! that records every request and answers as the test scripts it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use parking_lot::Mutex;
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Request {
    pub at: Instant,
    pub path: String,
    pub event_id: Option<String>,
    pub signature: Option<String>,
    pub content_type: Option<String>,
    pub body: String,
    pub json: Value,
}

/// How the receiver answers.
#[derive(Clone, Debug)]
pub enum Answer {
    /// This status, with this body.
    Status(u16, String),
    /// Never answers (the connection stays open).
    Hang,
    /// Answers after a delay.
    Delay(Duration, u16, String),
    /// A redirect with this status to this `Location`.
    Redirect(u16, String),
}

pub struct Receiver {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<(VecDeque<Answer>, Answer)>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    /// Answers 200 to everything.
    pub async fn start() -> Receiver {
        Receiver::scripted(Vec::new(), Answer::Status(200, String::new())).await
    }

    /// Answers with `first`, one per request in order, then `then` forever.
    pub async fn scripted(first: Vec<Answer>, then: Answer) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let script = Arc::new(Mutex::new((VecDeque::from(first), then)));
        let (r, s) = (requests.clone(), script.clone());
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let (r, s) = (r.clone(), s.clone());
                async move {
                    let header = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let text = String::from_utf8_lossy(&body).into_owned();
                    r.lock().push(Request {
                        at: Instant::now(),
                        path: uri.path().to_owned(),
                        event_id: header("maskline-event-id"),
                        signature: header("maskline-signature"),
                        content_type: header("content-type"),
                        json: serde_json::from_str(&text).unwrap_or(Value::Null),
                        body: text,
                    });
                    let answer = {
                        let mut s = s.lock();
                        let next = s.0.pop_front();
                        next.unwrap_or_else(|| s.1.clone())
                    };
                    let (status, body, location) = match answer {
                        Answer::Status(st, b) => (st, b, None),
                        Answer::Delay(d, st, b) => {
                            tokio::time::sleep(d).await;
                            (st, b, None)
                        }
                        Answer::Redirect(st, to) => (st, String::new(), Some(to)),
                        Answer::Hang => std::future::pending().await,
                    };
                    let mut headers = vec![("content-type", "application/json".to_owned())];
                    headers.extend(location.map(|to| ("location", to)));
                    let mut response = axum::response::Response::new(axum::body::Body::from(body));
                    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                    for (name, value) in headers {
                        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                            response.headers_mut().insert(name, value);
                        }
                    }
                    response
                }
            },
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            requests,
            script,
            stop: Some(stop),
        }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().clone()
    }

    /// Requests whose event type is `kind`.
    pub fn of_type(&self, kind: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.json["type"] == kind)
            .collect()
    }

    /// From now on, answer every request with `answer`.
    pub fn answer_all(&self, answer: Answer) {
        let mut s = self.script.lock();
        s.0.clear();
        s.1 = answer;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Checks a `Maskline-Signature` the way the README tells receivers to:
/// HMAC-SHA256 over `"<t>.<body>"` keyed with the secret, hex, compared in
/// constant time. Written here from the documentation, not shared with the
/// server's code.
pub fn signature_valid(secret: &str, header: &str, body: &str) -> bool {
    use hmac::{Hmac, Mac};
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = Some(v.to_owned()),
            Some(("v1", v)) => v1.push(v.to_owned()),
            _ => return false,
        }
    }
    let Some(t) = t else { return false };
    v1.iter().any(|sig| {
        let Ok(expected) = hex::decode(sig) else {
            return false;
        };
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(format!("{t}.{body}").as_bytes());
        mac.verify_slice(&expected).is_ok()
    })
}
