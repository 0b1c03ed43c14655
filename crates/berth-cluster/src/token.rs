//! Join tokens: `berth1.<id>.<secret>.<CA SHA-256>`. The control plane keeps the id and the
//! secret's SHA-256 with an expiry; the worker uses the secret to be let in and the CA hash
//! to know it reached the right control plane.

use rand::Rng;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// 8 hex digits: names the token without revealing it, in logs and the store.
    pub id: String,
    /// 32 hex digits.
    pub secret: String,
    /// The cluster CA's SHA-256, 64 hex digits.
    pub ca_sha256: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the join token is not berth1.<8 hex>.<32 hex>.<64 hex>: print a new one with `berth server join-token` on the control plane")]
    Malformed,
}

const PREFIX: &str = "berth1";

impl JoinToken {
    /// A new token for the CA with `ca_sha256`.
    pub fn mint(ca_sha256: &str) -> JoinToken {
        let mut rng = rand::rng();
        JoinToken {
            id: format!("{:08x}", rng.random::<u32>()),
            secret: format!("{:032x}", rng.random::<u128>()),
            ca_sha256: ca_sha256.to_string(),
        }
    }

    pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        let [PREFIX, id, secret, ca] = parts.as_slice() else {
            return Err(TokenError::Malformed);
        };
        let hex_of = |s: &str, len| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !(hex_of(id, 8) && hex_of(secret, 32) && hex_of(ca, 64)) {
            return Err(TokenError::Malformed);
        }
        Ok(JoinToken {
            id: id.to_string(),
            secret: secret.to_string(),
            ca_sha256: ca.to_string(),
        })
    }

    /// What the control plane stores in place of the secret.
    pub fn secret_sha256(secret: &str) -> String {
        crate::fingerprint(secret.as_bytes())
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PREFIX}.{}.{}.{}", self.id, self.secret, self.ca_sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_reads_back_and_bad_ones_do_not() {
        let ca = "ab".repeat(32);
        let token = JoinToken::mint(&ca);
        assert_eq!(JoinToken::parse(&token.to_string()), Ok(token.clone()));
        assert_eq!(JoinToken::parse(&format!(" {token}\n")), Ok(token.clone()));
        let text = token.to_string();
        for bad in [
            String::new(),
            text.replacen("berth1", "berth2", 1),
            text.to_uppercase(),
            format!("{text}.x"),
            text[..text.len() - 1].to_string(),
            format!("berth1.{}.{}", token.id, token.secret),
        ] {
            assert_eq!(
                JoinToken::parse(&bad),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }
}
