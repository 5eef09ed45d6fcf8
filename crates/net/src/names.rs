//! Interface names. The host end of a veth pair gets a fresh random name per
//! lease, never one derived from the container: a released container's host
//! end may still be dying in the kernel (it goes with the container's network
//! namespace, asynchronously), and a new lease must never meet it under its
//! own name, in the bridge port filter or at creation.

use crate::error::{Error, Result};

/// Prefix of every tupperware host interface.
pub const HOST_PREFIX: &str = "tw";
/// Random hex digits after [`HOST_PREFIX`]: 14 characters in all, within the
/// kernel's 15-character limit.
const HOST_DIGITS: usize = 12;

/// The names of one lease's veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethNames {
    /// Host end: `tw` + 12 random lowercase hex digits.
    pub host: String,
    /// Temporary name of the container end until it is renamed `eth0`:
    /// `twp` + the first 11 of the same digits (never a host name: `p` is
    /// not a hex digit).
    pub peer: String,
}

/// Fresh names for a new lease.
pub fn fresh() -> Result<VethNames> {
    let token = tupper_sys::random::hex(HOST_DIGITS / 2)
        .map_err(|e| Error::sys("draw an interface name", e))?;
    Ok(from_token(&token))
}

fn from_token(token: &str) -> VethNames {
    VethNames {
        host: format!("{HOST_PREFIX}{token}"),
        peer: format!("twp{}", token.get(..HOST_DIGITS - 1).unwrap_or(token)),
    }
}

/// Whether `name` has the shape of a host end this helper creates (and so may
/// be swept when no lease names it): `tw` + exactly 12 lowercase hex digits.
/// The bridge, the peers' temporary names and anyone else's interfaces never
/// match.
pub fn is_host_interface(name: &str) -> bool {
    name.strip_prefix(HOST_PREFIX).is_some_and(|r| {
        r.len() == HOST_DIGITS
            && r.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The interface name inside the container.
pub const CONTAINER_INTERFACE: &str = "eth0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz_and_differ_per_lease() {
        let a = fresh().unwrap();
        let b = fresh().unwrap();
        assert_ne!(a.host, b.host);
        assert!(a.host.len() <= 15 && a.peer.len() <= 15);
        assert!(is_host_interface(&a.host));
        assert!(!is_host_interface(&a.peer));
        let t = from_token("0123456789ab");
        assert_eq!(t.host, "tw0123456789ab");
        assert_eq!(t.peer, "twp0123456789a");
    }

    #[test]
    fn only_our_shape_is_a_host_interface() {
        for ok in ["tw0123456789ab", "twffffffffffff"] {
            assert!(is_host_interface(ok), "{ok}");
        }
        for no in [
            "tw0",
            "tupper0",
            "twp0123456789a",
            "tw0123456789abc",
            "tw0123456789a",
            "tw0123456789AB",
            "twdoctor0",
            "eth0",
            "xw0123456789ab",
        ] {
            assert!(!is_host_interface(no), "{no}");
        }
    }
}
