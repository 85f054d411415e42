//! Signing a delivery two ways, so that receivers written for either can check it:
//!
//! * PiAPI's: the endpoint's secret as given, in `x-webhook-secret`;
//! * the Standard Webhooks way (<https://www.standardwebhooks.com>): `webhook-id`,
//!   `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature: v1,<base64 of
//!   HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`.
//!
//! The HMAC key is the secret's bytes; a secret in the Standard Webhooks form `whsec_<base64>`
//! is base64-decoded first, as the Standard Webhooks libraries do, so such a secret verifies
//! with them unchanged. (For any other secret, a receiver using those libraries passes the
//! secret's raw bytes, e.g. `Webhook(secret.encode())` in Python.)

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The HMAC key of `secret`.
pub fn key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The `webhook-signature` value of one attempt.
pub fn signature(secret: &str, id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&key(secret)).expect("HMAC takes a key of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn the_specification_example() {
        let got = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(got, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn plain_secrets_are_their_bytes() {
        assert_eq!(key("my secret"), b"my secret");
        assert_eq!(key("whsec_not base64!"), b"whsec_not base64!");
        assert_ne!(
            signature("a", "msg_1", 1, b"{}"),
            signature("b", "msg_1", 1, b"{}")
        );
    }
}
