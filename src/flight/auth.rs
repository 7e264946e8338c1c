//! Authentication: Basic credentials in the Handshake buy a bearer token,
//! which every other RPC must carry in its `authorization` header.
//!
//! The check is a tower layer, not a tonic interceptor: the layer sees the
//! method path, so it can let Handshake through and check everything else.
//! Tokens live in memory; a restarted server asks clients to handshake again.
//!
//! # Token policy
//!
//! No client can wear the token table down, however often it calls:
//!
//! - Only the Handshake mints. Basic credentials on any other call are
//!   checked and the call passes; nothing is stored.
//! - A handshake hands back the user's newest token while that one has more
//!   than half of `token_ttl` left; past that it mints a fresh one. The old
//!   one stays valid until it expires, so a client using it is not cut off
//!   mid-query. One user thus holds at most two live tokens.
//! - The table holds at most `tokens_max` tokens. Minting purges the expired
//!   ones, then evicts the oldest while the table is full: a login is never
//!   refused for want of room. A token found expired on lookup is dropped.
//! - Tokens are kept by their SHA-256, and looked up by it. A lookup's timing
//!   can only tell about the digests, and a digest of 256 random bits says
//!   nothing of a token. (Each user's newest token is also kept in the clear,
//!   because the handshake hands it out again.) User name and password are
//!   compared digest to digest, in constant time, so the time taken does not
//!   depend on their lengths either.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest as _, Sha256};

use super::error::FlightError;

/// The one path the layer does not check.
pub const HANDSHAKE_PATH: &str = "/arrow.flight.protocol.FlightService/Handshake";

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

/// The SHA-256 of a secret.
type Digest = [u8; 32];

fn digest(secret: &[u8]) -> Digest {
    Sha256::digest(secret).into()
}

/// Compares digests in time that does not depend on where they differ.
fn constant_time_eq(a: &Digest, b: &Digest) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The configured credentials as the check needs them: the user name to
/// file tokens under, and the digests that Basic credentials must match.
struct Accepted {
    username: String,
    username_digest: Digest,
    password_digest: Digest,
}

impl Accepted {
    fn new(credentials: &Credentials) -> Self {
        Self {
            username: credentials.username.clone(),
            username_digest: digest(credentials.username.as_bytes()),
            password_digest: digest(credentials.password.as_bytes()),
        }
    }

    /// Checks `authorization: Basic ...`; `step` names the call in errors.
    fn verify(&self, header: &str, step: &str) -> Result<(), FlightError> {
        let (user, password) = parse_basic(header, step)?;
        // `&`, not `&&`: both comparisons run whichever fails.
        let matches = constant_time_eq(&digest(user.as_bytes()), &self.username_digest)
            & constant_time_eq(&digest(password.as_bytes()), &self.password_digest);
        if matches {
            Ok(())
        } else {
            Err(FlightError::Unauthenticated(format!(
                "{step}: wrong user name or password"
            )))
        }
    }
}

/// A token as the table keeps it.
struct Issued {
    user: String,
    expires: Instant,
    /// Mint order: breaks ties between tokens that expire at the same instant.
    serial: u64,
}

/// A user's newest token, in the clear, for the handshake to hand out again.
struct Newest {
    token: String,
    digest: Digest,
}

/// The tokens handed out and neither expired nor evicted, at most
/// `tokens_max` of them.
///
/// Invariants: `by_digest` and `by_expiry` hold the same tokens, and every
/// `newest` entry names one of them; so `newest` is bounded by the cap too.
struct Tokens {
    by_digest: HashMap<Digest, Issued>,
    /// Eviction order. Every token lives the same `ttl`, so the first to
    /// expire is also the oldest: "expired first, then the oldest" is one
    /// walk from the front.
    by_expiry: BTreeMap<(Instant, u64), Digest>,
    newest: HashMap<String, Newest>,
    minted: u64,
    ttl: Duration,
    tokens_max: usize,
}

impl Tokens {
    fn new(ttl: Duration, tokens_max: usize) -> Self {
        Self {
            by_digest: HashMap::new(),
            by_expiry: BTreeMap::new(),
            newest: HashMap::new(),
            minted: 0,
            ttl,
            // A login's own token must fit, whatever the config says.
            tokens_max: tokens_max.max(1),
        }
    }

    fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// `user`'s newest token if it has more than half its life left, else a
    /// fresh one (the older stays valid until it expires).
    fn reuse_or_mint(&mut self, user: &str, now: Instant) -> Result<String, FlightError> {
        self.purge_expired(now);
        if let Some(newest) = self.newest.get(user)
            && let Some(issued) = self.by_digest.get(&newest.digest)
            && issued.expires.saturating_duration_since(now) > self.ttl / 2
        {
            return Ok(newest.token.clone());
        }
        let expires = now.checked_add(self.ttl).ok_or_else(|| {
            FlightError::Internal("token_ttl reaches past the clock's range".into())
        })?;
        while self.len() >= self.tokens_max {
            let Some((_, oldest)) = self.by_expiry.first_key_value() else {
                break;
            };
            let oldest = *oldest;
            self.remove(&oldest);
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let token_digest = digest(token.as_bytes());
        self.minted += 1;
        let serial = self.minted;
        self.by_expiry.insert((expires, serial), token_digest);
        self.by_digest.insert(
            token_digest,
            Issued {
                user: user.to_string(),
                expires,
                serial,
            },
        );
        self.newest.insert(
            user.to_string(),
            Newest {
                token: token.clone(),
                digest: token_digest,
            },
        );
        Ok(token)
    }

    /// A live token passes; an expired one is dropped and refused.
    fn check(&mut self, token: &str, now: Instant) -> Result<(), FlightError> {
        let token_digest = digest(token.as_bytes());
        let Some(issued) = self.by_digest.get(&token_digest) else {
            return Err(FlightError::Unauthenticated(
                "unknown bearer token: handshake again".into(),
            ));
        };
        if issued.expires > now {
            return Ok(());
        }
        self.remove(&token_digest);
        Err(FlightError::Unauthenticated(
            "bearer token expired: handshake again".into(),
        ))
    }

    fn purge_expired(&mut self, now: Instant) {
        while let Some((&(expires, _), &first)) = self.by_expiry.first_key_value()
            && expires <= now
        {
            self.remove(&first);
        }
    }

    /// Drops a token from all three maps, keeping the invariants.
    fn remove(&mut self, token_digest: &Digest) {
        let Some(issued) = self.by_digest.remove(token_digest) else {
            return;
        };
        self.by_expiry.remove(&(issued.expires, issued.serial));
        if self
            .newest
            .get(&issued.user)
            .is_some_and(|newest| newest.digest == *token_digest)
        {
            self.newest.remove(&issued.user);
        }
    }
}

/// Checks credentials and tokens. With no credentials configured every
/// request passes (the server then only listens on loopback).
pub struct Authenticator {
    accepted: Option<Accepted>,
    // A std mutex: every critical section is a few map operations, with no
    // await inside, so an async mutex would only add cost.
    tokens: Mutex<Tokens>,
}

impl std::fmt::Debug for Authenticator {
    // By hand: the derived form would print the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("user", &self.accepted.as_ref().map(|a| &a.username))
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// `tokens_max` caps the stored tokens (at least one is always kept).
    pub fn new(credentials: Option<Credentials>, token_ttl: Duration, tokens_max: usize) -> Self {
        Self {
            accepted: credentials.as_ref().map(Accepted::new),
            tokens: Mutex::new(Tokens::new(token_ttl, tokens_max)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.accepted.is_some()
    }

    /// Handshake: checks `authorization: Basic ...` and returns the user's
    /// token, reused or fresh (see the module doc).
    pub fn login(&self, authorization: Option<&str>) -> Result<String, FlightError> {
        self.login_at(authorization, Instant::now())
    }

    fn login_at(&self, authorization: Option<&str>, now: Instant) -> Result<String, FlightError> {
        // Without credentials the tokens are never checked; clients still get
        // one, filed under the empty user name.
        let mut user = "";
        if let Some(accepted) = &self.accepted {
            let header = authorization.ok_or_else(|| {
                FlightError::Unauthenticated(
                    "handshake: send `authorization: Basic base64(user:password)`".into(),
                )
            })?;
            accepted.verify(header, "handshake")?;
            user = &accepted.username;
        }
        self.lock()?.reuse_or_mint(user, now)
    }

    /// Every other RPC: a live bearer token, or Basic credentials (checked,
    /// and nothing stored).
    pub fn check(&self, authorization: Option<&str>) -> Result<(), FlightError> {
        self.check_at(authorization, Instant::now())
    }

    fn check_at(&self, authorization: Option<&str>, now: Instant) -> Result<(), FlightError> {
        let Some(accepted) = &self.accepted else {
            return Ok(());
        };
        let header = authorization.ok_or_else(|| {
            FlightError::Unauthenticated(
                "missing `authorization` header: call Handshake with Basic credentials first"
                    .into(),
            )
        })?;
        if let Some(token) = strip_scheme(header, "Bearer") {
            return self.lock()?.check(token.trim(), now);
        }
        if strip_scheme(header, "Basic").is_some() {
            return accepted.verify(header, "basic credentials");
        }
        Err(FlightError::Unauthenticated(
            "`authorization` must be `Bearer <token>` or `Basic <credentials>`".into(),
        ))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Tokens>, FlightError> {
        self.tokens
            .lock()
            .map_err(|_| FlightError::Internal("token table poisoned".into()))
    }

    /// How many tokens the table holds, expired ones not yet purged included.
    #[cfg(test)]
    fn tokens_stored(&self) -> usize {
        self.lock().map_or(0, |tokens| tokens.len())
    }
}

fn strip_scheme<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// Basic credentials' base64, padded or not: ADBC's Go driver sends it
/// without the `=` padding, most clients with it.
const BASIC_BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

fn parse_basic(header: &str, step: &str) -> Result<(String, String), FlightError> {
    let bad = || FlightError::Unauthenticated(format!("{step}: malformed Basic credentials"));
    let encoded = strip_scheme(header, "Basic").ok_or_else(bad)?;
    let decoded = BASIC_BASE64.decode(encoded.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok((user.to_string(), password.to_string()))
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
    use base64::engine::general_purpose::STANDARD;

    const TTL: Duration = Duration::from_secs(60);

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    fn auth_with(token_ttl: Duration, tokens_max: usize) -> Authenticator {
        Authenticator::new(
            Some(Credentials {
                username: "quant".into(),
                password: "s3cret".into(),
            }),
            token_ttl,
            tokens_max,
        )
    }

    fn auth() -> Authenticator {
        auth_with(TTL, 1024)
    }

    #[test]
    fn a_token_from_the_handshake_opens_every_other_call() {
        let auth = auth();
        let token = auth.login(Some(&basic("quant", "s3cret"))).unwrap();
        auth.check(Some(&bearer(&token))).unwrap();
        auth.check(Some(&basic("quant", "s3cret"))).unwrap();
    }

    /// ADBC's Go driver leaves out base64's `=` padding; "quant:abuse" is
    /// 11 bytes, so its padded form ends in one `=`.
    #[test]
    fn basic_credentials_are_read_with_or_without_padding() {
        let auth = auth_with(TTL, 1024);
        for password in ["s3cret", "s3cre", "s3cr"] {
            let auth = Authenticator::new(
                Some(Credentials {
                    username: "quant".into(),
                    password: password.into(),
                }),
                TTL,
                1024,
            );
            let padded = STANDARD.encode(format!("quant:{password}"));
            let unpadded = padded.trim_end_matches('=').to_string();
            auth.login(Some(&format!("Basic {padded}"))).unwrap();
            auth.login(Some(&format!("Basic {unpadded}"))).unwrap();
        }
        assert!(
            auth.login(Some("Basic cXVhbnQ6czNjcmV0=")).is_err(),
            "bad padding"
        );
    }

    #[test]
    fn hostile_headers_are_unauthenticated() {
        let auth = auth();
        for header in [
            None,
            Some("Bearer nope".to_string()),
            Some("Bearer ".to_string()),
            Some(basic("quant", "wrong")),
            Some(basic("quant", "s3cre")),
            Some(basic("quant", "s3crett")),
            Some(basic("root", "s3cret")),
            Some(basic("quantt", "s3cret")),
            Some(basic("", "")),
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
        assert!(auth.login(None).is_err());
        assert_eq!(auth.tokens_stored(), 0);
    }

    /// The lock-out this policy exists to prevent: before it, every
    /// handshake stored a token, and a full table refused all logins.
    #[test]
    fn a_hundred_thousand_handshakes_neither_lock_out_nor_grow_the_store() {
        let tokens_max = 8;
        let auth = auth_with(TTL, tokens_max);
        let header = basic("quant", "s3cret");
        let t0 = Instant::now();

        // Within half a life every handshake gets the same token back.
        for _ in 0..100_000 {
            auth.login_at(Some(&header), t0).unwrap();
            assert!(auth.tokens_stored() <= tokens_max);
        }
        assert_eq!(auth.tokens_stored(), 1);
        let token = auth.login_at(Some(&header), t0).unwrap();
        auth.check_at(Some(&bearer(&token)), t0).unwrap();

        // With the clock past half a life at each, every handshake rotates.
        let step = TTL * 6 / 10;
        let mut now = t0;
        for _ in 0..100_000 {
            now += step;
            auth.login_at(Some(&header), now).unwrap();
            assert!(auth.tokens_stored() <= tokens_max);
        }
        let token = auth.login_at(Some(&header), now + step).unwrap();
        auth.check_at(Some(&bearer(&token)), now + step).unwrap();
    }

    /// The table is per user: 100 000 users at once fill it to the cap, no
    /// further, and the newest still gets in.
    #[test]
    fn a_hundred_thousand_users_fill_the_table_to_its_cap() {
        let mut tokens = Tokens::new(TTL, 1024);
        let now = Instant::now();
        let first = tokens.reuse_or_mint("user0", now).unwrap();
        let mut last = first.clone();
        for i in 1..100_000 {
            last = tokens.reuse_or_mint(&format!("user{i}"), now).unwrap();
        }
        assert_eq!(tokens.len(), 1024);
        assert!(tokens.newest.len() <= 1024);
        tokens.check(&last, now).unwrap();
        assert!(tokens.check(&first, now).is_err());
    }

    #[test]
    fn basic_credentials_on_a_call_store_nothing() {
        let auth = auth();
        for _ in 0..1000 {
            auth.check(Some(&basic("quant", "s3cret"))).unwrap();
        }
        assert_eq!(auth.tokens_stored(), 0);
    }

    #[test]
    fn rotation_keeps_the_old_token_until_it_expires() {
        let auth = auth();
        let header = basic("quant", "s3cret");
        let t0 = Instant::now();
        let old = auth.login_at(Some(&header), t0).unwrap();
        let at = |fraction: f64| t0 + TTL.mul_f64(fraction);

        assert_eq!(auth.login_at(Some(&header), at(0.4)).unwrap(), old);
        let new = auth.login_at(Some(&header), at(0.6)).unwrap();
        assert_ne!(new, old);
        assert_eq!(auth.login_at(Some(&header), at(0.7)).unwrap(), new);

        auth.check_at(Some(&bearer(&old)), at(0.99)).unwrap();
        let err = auth.check_at(Some(&bearer(&old)), at(1.0)).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        auth.check_at(Some(&bearer(&new)), at(1.59)).unwrap();
    }

    #[test]
    fn a_full_table_evicts_the_oldest() {
        let mut tokens = Tokens::new(TTL, 2);
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let a = tokens.reuse_or_mint("a", t0).unwrap();
        let b = tokens.reuse_or_mint("b", t0 + ms).unwrap();
        let c = tokens.reuse_or_mint("c", t0 + 2 * ms).unwrap();
        assert_eq!(tokens.len(), 2);
        let err = tokens.check(&a, t0 + 2 * ms).unwrap_err();
        assert!(err.to_string().contains("unknown"), "{err}");
        tokens.check(&b, t0 + 2 * ms).unwrap();
        tokens.check(&c, t0 + 2 * ms).unwrap();
        // An evicted newest token is not handed out again.
        assert_ne!(tokens.reuse_or_mint("a", t0 + 3 * ms).unwrap(), a);

        // A cap of 0 would refuse every login; one token is always kept.
        let mut tokens = Tokens::new(TTL, 0);
        let token = tokens.reuse_or_mint("a", t0).unwrap();
        tokens.check(&token, t0).unwrap();
    }

    #[test]
    fn minting_purges_every_expired_token() {
        let mut tokens = Tokens::new(TTL, 4);
        let t0 = Instant::now();
        for user in ["a", "b", "c"] {
            tokens.reuse_or_mint(user, t0).unwrap();
        }
        tokens.reuse_or_mint("d", t0 + TTL).unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens.newest.len(), 1);
    }

    #[test]
    fn expired_tokens_are_refused_and_dropped() {
        let instant = auth_with(Duration::ZERO, 1024);
        let token = instant.login(Some(&basic("quant", "s3cret"))).unwrap();
        let err = instant.check(Some(&bearer(&token))).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        assert_eq!(instant.tokens_stored(), 0);

        let auth = auth();
        let t0 = Instant::now();
        let token = auth.login_at(Some(&basic("quant", "s3cret")), t0).unwrap();
        let err = auth.check_at(Some(&bearer(&token)), t0 + TTL).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        let err = auth.check_at(Some(&bearer(&token)), t0).unwrap_err();
        assert!(err.to_string().contains("unknown"), "{err}");
    }

    #[test]
    fn without_credentials_everything_passes() {
        let auth = Authenticator::new(None, Duration::from_secs(1), 1024);
        auth.check(None).unwrap();
        auth.login(None).unwrap();
    }
}
