//! Published ports (issue 11): `-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]`
//! and `-p CONTAINERPORT` (an ephemeral host port), parsed and validated once
//! for the supervisor and `tupper-net`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// At most this many ports in one request (a container's whole list).
pub const MAX_PORTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port. `host_port` 0 asks for an ephemeral port (the
/// supervisor binds one and sends the port it got).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Only connections to this host address; `None` is every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl std::fmt::Display for PortSpec {
    /// As `ps` shows it: `0.0.0.0:8080->80/tcp`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        write!(
            f,
            "{ip}:{}->{}/{}",
            self.host_port,
            self.container_port,
            self.protocol.as_str()
        )
    }
}

fn bad(spec: &str, why: &str) -> Error {
    Error::invalid(format!("invalid port {spec:?}"), why)
}

fn port(spec: &str, s: &str, what: &str) -> Result<u16, Error> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(spec, &format!("{what} must be a number 1-65535")));
    }
    match s.parse::<u32>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(bad(spec, &format!("{what} must be a number 1-65535"))),
    }
}

impl PortSpec {
    /// `[HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]` or `CONTAINERPORT[/tcp|udp]`.
    pub fn parse(spec: &str) -> Result<PortSpec, Error> {
        if spec.len() > 64 {
            return Err(bad(spec, "too long"));
        }
        let (ports, protocol) = match spec.rsplit_once('/') {
            Some((p, "tcp")) => (p, Protocol::Tcp),
            Some((p, "udp")) => (p, Protocol::Udp),
            Some(_) => return Err(bad(spec, "the protocol must be tcp or udp")),
            None => (spec, Protocol::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (host_ip, host_port, container_port) = match parts.as_slice() {
            [c] => (None, 0, port(spec, c, "the container port")?),
            [h, c] => (
                None,
                port(spec, h, "the host port")?,
                port(spec, c, "the container port")?,
            ),
            [ip, h, c] => {
                let ip: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| bad(spec, "the host address must be an IPv4 address"))?;
                let host_port = if h.is_empty() {
                    0
                } else {
                    port(spec, h, "the host port")?
                };
                (Some(ip), host_port, port(spec, c, "the container port")?)
            }
            _ => {
                return Err(bad(
                    spec,
                    "expected [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]",
                ))
            }
        };
        let p = PortSpec {
            host_ip,
            host_port,
            container_port,
            protocol,
        };
        p.validate()?;
        Ok(p)
    }

    /// What a helper checks of every port it is sent.
    pub fn validate(&self) -> Result<(), Error> {
        let spec = self.to_string();
        if self.container_port == 0 {
            return Err(bad(&spec, "the container port must be 1-65535"));
        }
        if let Some(ip) = self.host_ip {
            if ip.is_multicast() || ip.is_broadcast() {
                return Err(bad(&spec, "the host address must be a unicast address"));
            }
            if ip.is_unspecified() {
                return Err(bad(&spec, "leave out 0.0.0.0 to publish on every address"));
            }
        }
        Ok(())
    }
}

/// A whole list: at most [`MAX_PORTS`], each valid, no host port twice per
/// protocol (ephemeral ones aside).
pub fn validate_list(ports: &[PortSpec]) -> Result<(), Error> {
    if ports.len() > MAX_PORTS {
        return Err(Error::invalid(
            format!("{} published ports", ports.len()),
            format!("at most {MAX_PORTS} per container"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for p in ports {
        p.validate()?;
        if p.host_port != 0 && !seen.insert((p.protocol, p.host_port)) {
            return Err(bad(&p.to_string(), "this host port is published twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms() {
        let p = PortSpec::parse("8080:80").unwrap();
        assert_eq!((p.host_ip, p.host_port, p.container_port), (None, 8080, 80));
        assert_eq!(p.protocol, Protocol::Tcp);
        let p = PortSpec::parse("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(p.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(p.protocol, Protocol::Udp);
        assert_eq!(p.to_string(), "127.0.0.1:5353->53/udp");
        let p = PortSpec::parse("80").unwrap();
        assert_eq!((p.host_port, p.container_port), (0, 80));
        let p = PortSpec::parse("10.0.0.1::80").unwrap();
        assert_eq!(p.host_port, 0);
    }

    #[test]
    fn refuses_bad_specs() {
        for bad in [
            "",
            "0",
            "0:80",
            "80:0",
            "65536:80",
            "80:65536",
            "../80",
            "80:../",
            "80/sctp",
            "a:b",
            "1:2:3:4",
            "-1:80",
            "+80:80",
            "0.0.0.0:80:80",
            "224.0.0.1:80:80",
            "::1:80:80",
            "80:80/",
            "99999999999999999999:80",
            " 80:80",
        ] {
            assert!(PortSpec::parse(bad).is_err(), "{bad:?}");
        }
        assert!(PortSpec::parse(&"1".repeat(100)).is_err());
    }

    #[test]
    fn lists_are_bounded_and_without_duplicates() {
        let p = PortSpec::parse("8080:80").unwrap();
        assert!(validate_list(&[p]).is_ok());
        assert!(validate_list(&[p, p]).is_err());
        let e = PortSpec::parse("80").unwrap();
        assert!(validate_list(&[e, e]).is_ok());
        assert!(validate_list(&vec![e; MAX_PORTS + 1]).is_err());
        let mut zero = p;
        zero.container_port = 0;
        assert!(validate_list(&[zero]).is_err());
    }
}
