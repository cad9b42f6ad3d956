//! One-time sign-in links sent by mail: `wms_<token id>.<expiry>.<mac>`, an
//! HMAC-SHA-256 under the servers' shared link key, kept apart from review
//! links' MACs by a label. The token row they name is what makes them single
//! use (the store redeems it once); the MAC is what makes them unguessable,
//! and lets the mail be composed later from the event without storing the
//! secret.

use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use crate::TokenId;

/// Sign-in link tokens start with this.
pub const PREFIX: &str = "wms_";

/// How long a sign-in link works.
pub const LIFETIME: Duration = Duration::minutes(15);

fn mac(key: &[u8], payload: &str) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"sign-in\0");
    mac.update(payload.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The token of a sign-in link for `token` (a token row of the sign-in kind).
pub fn sign(key: &[u8], token: TokenId, expires_at: OffsetDateTime) -> String {
    let payload = format!("{}.{}", token.uuid().simple(), expires_at.unix_timestamp());
    format!("{PREFIX}{payload}.{}", hex::encode(mac(key, &payload)))
}

/// The token row a link names, when its MAC holds and it has not expired.
pub fn verify(key: &[u8], link: &str, now: OffsetDateTime) -> Option<TokenId> {
    let rest = link.strip_prefix(PREFIX)?;
    let (payload, sig) = rest.rsplit_once('.')?;
    let sig = hex::decode(sig).ok()?;
    if !bool::from(mac(key, payload).ct_eq(sig.as_slice())) {
        return None;
    }
    let (uuid, expiry) = payload.split_once('.')?;
    let expiry: i64 = expiry.parse().ok()?;
    if expiry <= now.unix_timestamp() {
        return None;
    }
    Some(TokenId::from_uuid(uuid::Uuid::try_parse(uuid).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire_and_only_under_their_key() {
        let key = b"key";
        let id = TokenId::new();
        let now = OffsetDateTime::now_utc();
        let link = sign(key, id, now + LIFETIME);
        assert!(link.starts_with(PREFIX));
        assert_eq!(verify(key, &link, now), Some(id));
        assert_eq!(verify(b"other", &link, now), None);
        assert_eq!(verify(key, &link, now + LIFETIME), None, "expired");
        let forged = link.replacen(
            &id.uuid().simple().to_string(),
            &TokenId::new().uuid().simple().to_string(),
            1,
        );
        assert_eq!(verify(key, &forged, now), None);
        // A review link's MAC over the same payload is not a sign-in link's.
        let review = crate::review::sign_link(
            key,
            crate::ReviewLinkId::from_uuid(id.uuid()),
            now + LIFETIME,
        );
        let as_sign_in = review.replacen(crate::review::LINK_PREFIX, PREFIX, 1);
        assert_eq!(verify(key, &as_sign_in, now), None);
        assert_eq!(verify(key, "wms_nonsense", now), None);
    }
}
