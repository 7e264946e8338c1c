//! Authentication: Basic credentials in the Handshake buy a bearer token,
//! which every other RPC must carry in its `authorization` header.
//!
//! The check is a tower layer, not a tonic interceptor: the layer sees the
//! method path, so it can let Handshake through and check everything else.
//! Tokens live in memory; a restarted server asks clients to handshake again.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;

use super::error::FlightError;

/// The one path the layer does not check.
pub const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

/// Most live tokens; past it, expired ones are purged and then new logins
/// are refused until some expire.
const TOKENS_MAX: usize = 100_000;

/// A user name and password the server accepts.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// Checks credentials and tokens. With no credentials configured every
/// request passes (the server then only listens on loopback).
#[derive(Debug)]
pub struct Authenticator {
    credentials: Option<Credentials>,
    token_ttl: Duration,
    tokens: Mutex<HashMap<String, Instant>>,
}

impl Authenticator {
    pub fn new(credentials: Option<Credentials>, token_ttl: Duration) -> Self {
        Self {
            credentials,
            token_ttl,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.credentials.is_some()
    }

    /// Handshake: checks `authorization: Basic ...` and returns a new token.
    pub fn login(&self, authorization: Option<&str>) -> Result<String, FlightError> {
        if let Some(expected) = &self.credentials {
            let header = authorization.ok_or_else(|| {
                FlightError::Unauthenticated(
                    "handshake: send `authorization: Basic base64(user:password)`".into(),
                )
            })?;
            let (user, password) = parse_basic(header)?;
            if !(constant_time_eq(user.as_bytes(), expected.username.as_bytes())
                & constant_time_eq(password.as_bytes(), expected.password.as_bytes()))
            {
                return Err(FlightError::Unauthenticated(
                    "handshake: wrong user name or password".into(),
                ));
            }
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut tokens = self
            .tokens
            .lock()
            .map_err(|_| FlightError::Internal("token table poisoned".into()))?;
        if tokens.len() >= TOKENS_MAX {
            tokens.retain(|_, expires| *expires > now);
            if tokens.len() >= TOKENS_MAX {
                return Err(FlightError::Unauthenticated(
                    "handshake: too many live sessions; retry later".into(),
                ));
            }
        }
        tokens.insert(token.clone(), now + self.token_ttl);
        Ok(token)
    }

    /// Every other RPC: a live bearer token, or Basic credentials.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), FlightError> {
        if self.credentials.is_none() {
            return Ok(());
        }
        let header = authorization.ok_or_else(|| {
            FlightError::Unauthenticated(
                "missing `authorization` header: call Handshake with Basic credentials first"
                    .into(),
            )
        })?;
        if let Some(token) = strip_scheme(header, "Bearer") {
            let tokens = self
                .tokens
                .lock()
                .map_err(|_| FlightError::Internal("token table poisoned".into()))?;
            return match tokens.get(token.trim()) {
                Some(expires) if *expires > Instant::now() => Ok(()),
                Some(_) => Err(FlightError::Unauthenticated(
                    "bearer token expired: handshake again".into(),
                )),
                None => Err(FlightError::Unauthenticated(
                    "unknown bearer token: handshake again".into(),
                )),
            };
        }
        if strip_scheme(header, "Basic").is_some() {
            return self.login(Some(header)).map(|_| ());
        }
        Err(FlightError::Unauthenticated(
            "`authorization` must be `Bearer <token>` or `Basic <credentials>`".into(),
        ))
    }
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn parse_basic(header: &str) -> Result<(String, String), FlightError> {
    let bad = || FlightError::Unauthenticated("handshake: malformed Basic credentials".into());
    let encoded = strip_scheme(header, "Basic").ok_or_else(bad)?;
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok((user.to_string(), password.to_string()))
}

/// Compares secrets in time that depends on their length only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The tower layer that checks every RPC but Handshake.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B, R> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != HANDSHAKE_PATH {
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if let Err(e) = self.auth.check(header) {
                let status = tonic::Status::from(e);
                return Box::pin(async move { Ok(status.into_http()) });
            }
        }
        // The clone that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    fn auth() -> Authenticator {
        Authenticator::new(
            Some(Credentials {
                username: "quant".into(),
                password: "s3cret".into(),
            }),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn a_token_from_the_handshake_opens_every_other_call() {
        let auth = auth();
        let token = auth.login(Some(&basic("quant", "s3cret"))).unwrap();
        auth.check(Some(&format!("Bearer {token}"))).unwrap();
        auth.check(Some(&basic("quant", "s3cret"))).unwrap();
    }

    #[test]
    fn hostile_headers_are_unauthenticated() {
        let auth = auth();
        for header in [
            None,
            Some("Bearer nope".to_string()),
            Some(basic("quant", "wrong")),
            Some(basic("root", "s3cret")),
            Some("Basic %%%not-base64".to_string()),
            Some(format!("Basic {}", STANDARD.encode("no-colon"))),
            Some("Token abc".to_string()),
            Some(String::new()),
        ] {
            let err = auth.check(header.as_deref()).unwrap_err();
            assert!(
                matches!(err, FlightError::Unauthenticated(_)),
                "{header:?}: {err}"
            );
        }
        assert!(auth.login(Some(&basic("quant", "s3cre"))).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let auth = Authenticator::new(
            Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            Duration::ZERO,
        );
        let token = auth.login(Some(&basic("u", "p"))).unwrap();
        let err = auth.check(Some(&format!("Bearer {token}"))).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn without_credentials_everything_passes() {
        let auth = Authenticator::new(None, Duration::from_secs(1));
        auth.check(None).unwrap();
        auth.login(None).unwrap();
    }
}
