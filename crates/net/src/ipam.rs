//! Address arithmetic of the container subnet: which addresses may be leased.

#[cfg(test)]
use std::collections::HashSet;
use std::net::Ipv4Addr;

use tupper_config::system::{mask, NetworkConfig};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
}

impl Subnet {
    pub fn from_config(cfg: &NetworkConfig) -> Result<Subnet> {
        let (network, prefix) = cfg.subnet().map_err(Error::InvalidConfig)?;
        let s = Subnet {
            network,
            prefix,
            gateway: cfg.gateway,
        };
        if !(8..=30).contains(&prefix) || !s.contains(cfg.gateway) || !s.is_host(cfg.gateway) {
            return Err(Error::InvalidConfig(format!(
                "gateway {} is not a host address of {}",
                cfg.gateway,
                s.cidr()
            )));
        }
        Ok(s)
    }

    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }

    fn broadcast(&self) -> u32 {
        u32::from(self.network) | !mask(self.prefix)
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & mask(self.prefix) == u32::from(self.network)
    }

    /// Inside the subnet and neither the network nor the broadcast address.
    fn is_host(&self, a: Ipv4Addr) -> bool {
        let a = u32::from(a);
        self.contains(a.into()) && a != u32::from(self.network) && a != self.broadcast()
    }

    /// Every address that may be leased, lowest first: neither the network,
    /// the gateway nor the broadcast address.
    pub fn leasable(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.network) + 1;
        let last = self.broadcast() - 1;
        let gateway = self.gateway;
        (first..=last)
            .map(Ipv4Addr::from)
            .filter(move |a| *a != gateway)
    }

    /// The lowest leasable address not in `used`.
    #[cfg(test)]
    pub fn first_free(&self, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        self.leasable().find(|a| !used.contains(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(cidr: &str, gw: [u8; 4]) -> Subnet {
        Subnet::from_config(&NetworkConfig {
            bridge: "tw0".into(),
            subnet: cidr.into(),
            gateway: Ipv4Addr::from(gw),
            outbound: true,
        })
        .unwrap()
    }

    #[test]
    fn default_subnet_starts_at_two() {
        let s = subnet("10.88.0.0/16", [10, 88, 0, 1]);
        assert_eq!(s.cidr(), "10.88.0.0/16");
        let mut used = HashSet::new();
        assert_eq!(s.first_free(&used), Some(Ipv4Addr::new(10, 88, 0, 2)));
        used.insert(Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(s.first_free(&used), Some(Ipv4Addr::new(10, 88, 0, 3)));
        // A hole is filled first.
        used.insert(Ipv4Addr::new(10, 88, 0, 4));
        assert_eq!(s.first_free(&used), Some(Ipv4Addr::new(10, 88, 0, 3)));
    }

    #[test]
    fn gateway_elsewhere_and_crossing_octets() {
        let s = subnet("10.88.0.0/16", [10, 88, 0, 2]);
        let used: HashSet<_> = (1..=254).map(|i| Ipv4Addr::new(10, 88, 0, i)).collect();
        assert_eq!(s.first_free(&used), Some(Ipv4Addr::new(10, 88, 0, 255)));
    }

    #[test]
    fn small_subnet_exhausts_without_network_gateway_broadcast() {
        // /30: .0 network, .1 gateway, .2 the only lease, .3 broadcast.
        let s = subnet("192.168.5.0/30", [192, 168, 5, 1]);
        let mut used = HashSet::new();
        assert_eq!(s.first_free(&used), Some(Ipv4Addr::new(192, 168, 5, 2)));
        used.insert(Ipv4Addr::new(192, 168, 5, 2));
        assert_eq!(s.first_free(&used), None);
        // /29 with the gateway at the top.
        let s = subnet("192.168.5.8/29", [192, 168, 5, 14]);
        let used: HashSet<_> = (9..=13).map(|i| Ipv4Addr::new(192, 168, 5, i)).collect();
        assert_eq!(s.first_free(&used), None);
    }

    #[test]
    fn rejects_gateway_on_network_or_broadcast() {
        for gw in [[10, 88, 0, 0], [10, 88, 255, 255]] {
            assert!(Subnet::from_config(&NetworkConfig {
                bridge: "tw0".into(),
                subnet: "10.88.0.0/16".into(),
                gateway: Ipv4Addr::from(gw),
                outbound: true,
            })
            .is_err());
        }
    }
}
