//! Kling's per-request credential: an HS256 JWT `{"iss": access_key, "exp": now+1800,
//! "nbf": now-5}` signed with the secret key, minted by `jsonwebtoken`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// Token lifetime and the `nbf` allowance for clock skew, as Kling's own client mints them.
pub(super) const TOKEN_TTL_SECS: u64 = 1800;
pub(super) const TOKEN_SKEW_SECS: u64 = 5;

/// The claims Kling reads.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub(super) struct Claims {
    pub(super) iss: String,
    pub(super) exp: u64,
    pub(super) nbf: u64,
}

impl Claims {
    pub(super) fn new(access_key: &str, now_secs: u64) -> Claims {
        Claims {
            iss: access_key.to_owned(),
            exp: now_secs + TOKEN_TTL_SECS,
            nbf: now_secs.saturating_sub(TOKEN_SKEW_SECS),
        }
    }
}

/// A signed token, or why none could be made (an empty secret key).
pub(super) fn sign(
    access_key: &str,
    secret_key: &str,
    now_secs: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    // `Header::new` sets `typ: "JWT"`.
    let header = Header::new(Algorithm::HS256);
    let key = EncodingKey::from_secret(secret_key.as_bytes())?;
    jsonwebtoken::encode(&header, &Claims::new(access_key, now_secs), &key)
}

/// An HS256 JWT `{"iss": access_key, "exp": now+1800, "nbf": now-5}` signed with the secret.
///
/// # Panics
/// On an empty secret key, which `jsonwebtoken` refuses (the client itself refuses it as
/// an account error before it gets here).
pub fn mint_jwt(access_key: &str, secret_key: &str, now_secs: u64) -> String {
    sign(access_key, secret_key, now_secs).expect("an HS256 token with a non-empty secret")
}
