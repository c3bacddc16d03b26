//! Signing keys and tokens for tests and benches (feature `test-util`):
//! an issuer's side, so a test can publish a JWKS and mint tokens without a
//! real identity provider.
//!
//! ```
//! use claude_tower_identity::test_util::{SigningKey, jwks};
//! use claude_tower_identity::{IdentityConfig, IdentityLayer};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let key = SigningKey::rsa("k1");
//! let layer = IdentityLayer::new(
//!     IdentityConfig::default()
//!         .with_issuer_keys("https://issuer.test", jwks(&[&key]))
//!         .with_audience("api://claude"),
//! )
//! .unwrap();
//! let token = key.sign(&json!({
//!     "iss": "https://issuer.test", "aud": "api://claude", "sub": "ada",
//!     "exp": claude_tower_identity::test_util::now() + 600,
//! }));
//! let mut headers = http::HeaderMap::new();
//! headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
//! assert_eq!(layer.authenticate(&headers).await.unwrap().id(), "ada");
//! # }
//! ```

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// Seconds since the Unix epoch, the unit of `exp` and `nbf`.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private signing key with its `kid`, generated fresh.
pub struct SigningKey {
    kid: String,
    pair: Pair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A 2048-bit RSA key signing RS256.
    pub fn rsa(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        Self {
            kid: kid.to_owned(),
            pair: Pair::Rsa(pair),
        }
    }

    /// A P-256 key signing ES256.
    pub fn ec(kid: &str) -> Self {
        let pair =
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC key generation");
        Self {
            kid: kid.to_owned(),
            pair: Pair::Ec(pair),
        }
    }

    /// The key's id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `RS256` or `ES256`.
    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Rsa(_) => "RS256",
            Pair::Ec(_) => "ES256",
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        match &self.pair {
            Pair::Rsa(pair) => {
                let public = pair.public_key();
                json!({
                    "kty": "RSA", "use": "sig", "kid": self.kid,
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero()),
                })
            }
            Pair::Ec(pair) => {
                // Uncompressed point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                json!({
                    "kty": "EC", "use": "sig", "kid": self.kid, "crv": "P-256",
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]),
                })
            }
        }
    }

    /// A token with the usual header (`alg`, `typ`, `kid`) and `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": self.alg(), "typ": "JWT", "kid": self.kid});
        self.sign_with_header(&header, claims)
    }

    /// A token with any header (an `alg` of `none`, no `kid`...), signed
    /// with this key's own algorithm.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let signature = match &self.pair {
            Pair::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut sig)
                    .expect("RSA signing");
                sig
            }
            Pair::Ec(pair) => pair
                .sign(&rng, message.as_bytes())
                .expect("EC signing")
                .as_ref()
                .to_vec(),
        };
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// A JWKS document publishing `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}
