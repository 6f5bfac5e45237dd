//! Who may join: the operator's pre-shared key (`network.psk`, libp2p pnet: without it no
//! byte of a connection makes sense) and allow- and denylists of peer ids (`network.allow`,
//! `network.deny`). This module owns parsing the key and deciding whether a peer id is
//! admitted; the event loop builds the transport and the connection filters from it. It never
//! touches the swarm.

use libp2p::PeerId;
use libp2p::pnet::PreSharedKey;
use std::collections::HashSet;

/// Hex digits of a pre-shared key (32 bytes).
pub const PSK_HEX_LEN: usize = 64;

/// Why a pre-shared key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PskError {
    #[error("a pre-shared key is {PSK_HEX_LEN} hex digits (32 bytes), this one has {0}")]
    Length(usize),
    #[error("a pre-shared key is hex digits only (0-9, a-f), found {0:?}")]
    NotHex(char),
}

/// Parses a pre-shared key written as 64 hex digits (upper or lower case).
pub fn parse_psk(hex: &str) -> Result<PreSharedKey, PskError> {
    let hex = hex.trim();
    let len = hex.chars().count();
    if len != PSK_HEX_LEN {
        return Err(PskError::Length(len));
    }
    let mut key = [0u8; 32];
    let digits: Vec<u8> = hex
        .chars()
        .map(|c| c.to_digit(16).map(|d| d as u8).ok_or(PskError::NotHex(c)))
        .collect::<Result<_, _>>()?;
    for (byte, pair) in key.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (pair[0] << 4) | pair[1];
    }
    Ok(PreSharedKey::new(key))
}

/// A fresh random pre-shared key, as 64 hex digits (`murmur psk`).
pub fn new_psk_hex(rng: &mut impl rand::Rng) -> String {
    let key: [u8; 32] = rng.random();
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which peer ids may connect: everyone on the allowlist (everyone when it is empty), minus
/// everyone on the denylist (the denylist wins).
#[derive(Debug, Clone, Default)]
pub struct Access {
    allow: HashSet<PeerId>,
    deny: HashSet<PeerId>,
}

impl Access {
    pub fn new(
        allow: impl IntoIterator<Item = PeerId>,
        deny: impl IntoIterator<Item = PeerId>,
    ) -> Self {
        Self {
            allow: allow.into_iter().collect(),
            deny: deny.into_iter().collect(),
        }
    }

    /// Whether `peer` may connect and be listened to.
    pub fn admits(&self, peer: &PeerId) -> bool {
        !self.deny.contains(peer) && (self.allow.is_empty() || self.allow.contains(peer))
    }

    /// Whether `peer` is on the denylist (never unblocked).
    pub fn denies(&self, peer: &PeerId) -> bool {
        self.deny.contains(peer)
    }

    /// The allowlist, `None` when everyone is allowed.
    pub fn allowlist(&self) -> Option<&HashSet<PeerId>> {
        (!self.allow.is_empty()).then_some(&self.allow)
    }

    pub fn denylist(&self) -> &HashSet<PeerId> {
        &self.deny
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_64_hex_digits() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
        let key = parse_psk(hex).unwrap();
        let same = parse_psk(&hex.to_lowercase()).unwrap();
        let print = |k: &PreSharedKey| k.fingerprint().to_string();
        assert_eq!(print(&key), print(&same));
        assert_ne!(print(&key), print(&parse_psk(&"0".repeat(64)).unwrap()));
        assert!(matches!(parse_psk("abc"), Err(PskError::Length(3))));
        assert!(matches!(
            parse_psk(&"g".repeat(64)),
            Err(PskError::NotHex('g'))
        ));
        assert!(matches!(
            parse_psk(&"0".repeat(65)),
            Err(PskError::Length(65))
        ));
        assert!(matches!(
            parse_psk(&"é".repeat(64)),
            Err(PskError::NotHex('é'))
        ));
        let fresh = new_psk_hex(&mut rand::rng());
        assert!(parse_psk(&fresh).is_ok());
    }

    #[test]
    fn the_denylist_wins_and_an_empty_allowlist_admits_everyone() {
        let [a, b, c] = [PeerId::random(), PeerId::random(), PeerId::random()];
        let open = Access::default();
        assert!(open.admits(&a) && open.allowlist().is_none());
        let deny = Access::new([], [a]);
        assert!(!deny.admits(&a) && deny.admits(&b) && deny.denies(&a));
        let allow = Access::new([a, b], [b]);
        assert!(allow.admits(&a));
        assert!(!allow.admits(&b), "denied although allowed");
        assert!(!allow.admits(&c), "not on the allowlist");
    }
}
