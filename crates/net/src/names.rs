//! Interface names derived from a (validated, 32 hex digit) container id.

/// Host end of the veth pair: `tw` + the first 12 hex digits (14 characters,
/// within the kernel's 15-character limit).
pub fn host_interface(container: &str) -> String {
    format!("tw{}", prefix(container, 12))
}

/// Temporary name of the container end until it is renamed `eth0`:
/// `twp` + the first 11 hex digits.
pub fn peer_temp(container: &str) -> String {
    format!("twp{}", prefix(container, 11))
}

/// The interface name inside the container.
pub const CONTAINER_INTERFACE: &str = "eth0";

fn prefix(s: &str, n: usize) -> &str {
    // Ids are ASCII hex once validated; `get` keeps this total for anything else.
    s.get(..n).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn names_fit_ifnamsiz() {
        assert_eq!(host_interface(ID), "tw0123456789ab");
        assert_eq!(peer_temp(ID), "twp0123456789a");
        assert!(host_interface(ID).len() <= 15);
        assert!(peer_temp(ID).len() <= 15);
        assert_ne!(host_interface(ID), peer_temp(ID));
    }

    #[test]
    fn short_input_does_not_panic() {
        assert_eq!(host_interface("ab"), "twab");
        assert_eq!(peer_temp("é"), "twpé");
    }
}
