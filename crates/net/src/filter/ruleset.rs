//! The `bridge tupperware` table: what [`super::install_port`] and
//! [`super::remove_port`] send, as lists of nf_tables messages.
//!
//! ```text
//! table bridge tupperware {
//!     map ports { type ifname : verdict; }
//!     chain prerouting {
//!         type filter hook prerouting priority filter; policy accept;
//!         iifname vmap @ports
//!         iifname "tw*" drop
//!     }
//!     chain port-tw0123456789ab { ... see port_rules ... }
//! }
//! ```

use std::net::Ipv4Addr;

use super::expr::{put_expressions, put_verdict, Base, CmpOp, Expr, Verdict, NFTA_DATA_VALUE};
use super::expr::{NFT_META_IIFNAME, NFT_META_L4PROTO};
use super::nfnl::{Message, MsgType, NFPROTO_BRIDGE};

pub const TABLE: &str = "tupperware";
pub const BASE_CHAIN: &str = "prerouting";
pub const PORTS_MAP: &str = "ports";
/// Prefix of every tupperware host interface (see `names.rs`).
pub const PORT_PREFIX: &str = "tw";
pub(crate) const IFNAMSIZ: usize = 16;
/// NF_BR_PRE_ROUTING and NF_BR_PRI_FILTER_BRIDGED.
const HOOK_PREROUTING: u32 = 0;
const PRIORITY_FILTER: i32 = -200;
/// nft's datatype id of `ifname` (only used by `nft list` to print the map).
pub(crate) const TYPE_IFNAME: u32 = 41;
pub(crate) const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
pub(crate) const NFT_SET_MAP: u32 = 0x8;
/// Transaction-local id of the map, for the lookup in the same batch.
const PORTS_SET_ID: u32 = 1;

// Attribute numbers (enum nft_*_attributes).
pub(crate) const NFTA_TABLE_NAME: u16 = 1;
pub(crate) const NFTA_CHAIN_TABLE: u16 = 1;
pub(crate) const NFTA_CHAIN_NAME: u16 = 3;
pub(crate) const NFTA_CHAIN_HOOK: u16 = 4;
pub(crate) const NFTA_CHAIN_POLICY: u16 = 5;
pub(crate) const NFTA_CHAIN_TYPE: u16 = 7;
pub(crate) const NFTA_HOOK_HOOKNUM: u16 = 1;
pub(crate) const NFTA_HOOK_PRIORITY: u16 = 2;
pub(crate) const NFTA_RULE_TABLE: u16 = 1;
pub(crate) const NFTA_RULE_CHAIN: u16 = 2;
pub(crate) const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub(crate) const NFTA_RULE_USERDATA: u16 = 7;
pub(crate) const NFTA_SET_TABLE: u16 = 1;
pub(crate) const NFTA_SET_NAME: u16 = 2;
pub(crate) const NFTA_SET_FLAGS: u16 = 3;
pub(crate) const NFTA_SET_KEY_TYPE: u16 = 4;
pub(crate) const NFTA_SET_KEY_LEN: u16 = 5;
pub(crate) const NFTA_SET_DATA_TYPE: u16 = 6;
pub(crate) const NFTA_SET_ID: u16 = 10;
pub(crate) const NFTA_SET_USERDATA: u16 = 13;
/// NFTNL_UDATA_SET_KEYBYTEORDER (0), length 4, BYTEORDER_HOST_ENDIAN (1) as a host u32.
pub(crate) const SET_USERDATA: [u8; 6] = {
    let b = 1u32.to_ne_bytes();
    [0, 4, b[0], b[1], b[2], b[3]]
};
pub(crate) const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub(crate) const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub(crate) const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub(crate) const NFTA_LIST_ELEM: u16 = 1;
pub(crate) const NFTA_SET_ELEM_KEY: u16 = 1;
pub(crate) const NFTA_SET_ELEM_DATA: u16 = 2;

const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
/// ARP header start for Ethernet/IPv4: htype 1, ptype 0x0800, hlen 6, plen 4.
const ARP_ETHER_IPV4: [u8; 6] = [0x00, 0x01, 0x08, 0x00, 0x06, 0x04];
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_UDP: u8 = 17;
const DHCP_SERVER_PORT: u16 = 67;
const ICMP_REDIRECT: u8 = 5;
const ICMP_ROUTER_ADVERTISEMENT: u8 = 9;

/// The chain of one bridge port.
pub fn port_chain(host_if: &str) -> String {
    format!("port-{host_if}")
}

/// What one port may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortIdentity {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
}

/// An interface name as the `ifname` key of the map: NUL-padded to IFNAMSIZ.
pub(crate) fn ifname_key(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.resize(IFNAMSIZ, 0);
    k
}

fn table_msg() -> Message {
    let mut m = Message::new(
        MsgType::NewTable,
        NFPROTO_BRIDGE,
        "create table bridge tupperware",
    );
    m.attrs.put_str(NFTA_TABLE_NAME, TABLE);
    m
}

fn chain_msg(ty: MsgType, name: &str, what: String) -> Message {
    let mut m = Message::new(ty, NFPROTO_BRIDGE, what);
    m.attrs
        .put_str(NFTA_CHAIN_TABLE, TABLE)
        .put_str(NFTA_CHAIN_NAME, name);
    m
}

fn base_chain_msg() -> Message {
    let mut m = chain_msg(
        MsgType::NewChain,
        BASE_CHAIN,
        format!("create base chain {BASE_CHAIN} (bridge family, hook prerouting)"),
    );
    m.attrs
        .nest(NFTA_CHAIN_HOOK, |h| {
            h.put_be32(NFTA_HOOK_HOOKNUM, HOOK_PREROUTING)
                .put_be32(NFTA_HOOK_PRIORITY, PRIORITY_FILTER as u32);
        })
        .put_be32(NFTA_CHAIN_POLICY, super::expr::NF_ACCEPT as u32)
        .put_str(NFTA_CHAIN_TYPE, "filter");
    m
}

fn ports_map_msg() -> Message {
    let mut m = Message::new(
        MsgType::NewSet,
        NFPROTO_BRIDGE,
        format!("create map {PORTS_MAP}"),
    );
    m.attrs
        .put_str(NFTA_SET_TABLE, TABLE)
        .put_str(NFTA_SET_NAME, PORTS_MAP)
        .put_be32(NFTA_SET_FLAGS, NFT_SET_MAP)
        .put_be32(NFTA_SET_KEY_TYPE, TYPE_IFNAME)
        .put_be32(NFTA_SET_KEY_LEN, IFNAMSIZ as u32)
        .put_be32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT)
        .put_be32(NFTA_SET_ID, PORTS_SET_ID)
        // For `nft list` only (libnftnl's udata TLV): the key is a host-order string.
        .put(NFTA_SET_USERDATA, &SET_USERDATA);
    m
}

/// Delete every rule of `chain` (a DELRULE naming no rule).
pub(crate) fn flush_msg(chain: &str) -> Message {
    let mut m = Message::new(
        MsgType::DelRule,
        NFPROTO_BRIDGE,
        format!("flush chain {chain}"),
    );
    m.attrs
        .put_str(NFTA_RULE_TABLE, TABLE)
        .put_str(NFTA_RULE_CHAIN, chain);
    m
}

fn rule_msg(chain: &str, n: usize, exprs: &[Expr]) -> Message {
    let mut m = Message::new(
        MsgType::NewRule,
        NFPROTO_BRIDGE,
        format!("add rule {n} of chain {chain}"),
    );
    m.attrs
        .put_str(NFTA_RULE_TABLE, TABLE)
        .put_str(NFTA_RULE_CHAIN, chain);
    put_expressions(&mut m.attrs, NFTA_RULE_EXPRESSIONS, exprs);
    m
}

fn elem_msg(ty: MsgType, host_if: &str, what: String) -> Message {
    let mut m = Message::new(ty, NFPROTO_BRIDGE, what);
    m.attrs
        .put_str(NFTA_SET_ELEM_LIST_TABLE, TABLE)
        .put_str(NFTA_SET_ELEM_LIST_SET, PORTS_MAP)
        .nest(NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
            list.nest(NFTA_LIST_ELEM, |el| {
                el.nest(NFTA_SET_ELEM_KEY, |k| {
                    k.put(NFTA_DATA_VALUE, &ifname_key(host_if));
                });
                if ty == MsgType::NewSetElem {
                    put_verdict(el, NFTA_SET_ELEM_DATA, &Verdict::Jump(port_chain(host_if)));
                }
            });
        });
    m
}

pub(crate) fn payload(base: Base, offset: u32, len: u32) -> Expr {
    Expr::Payload { base, offset, len }
}

pub(crate) fn eq(data: &[u8]) -> Expr {
    Expr::Cmp {
        op: CmpOp::Eq,
        data: data.to_vec(),
    }
}

pub(crate) fn neq(data: &[u8]) -> Expr {
    Expr::Cmp {
        op: CmpOp::Neq,
        data: data.to_vec(),
    }
}

/// `ether type TYPE`
fn ether_type(t: [u8; 2]) -> [Expr; 2] {
    [payload(Base::Link, 12, 2), eq(&t)]
}

/// `meta l4proto PROTO`
fn l4proto(p: u8) -> [Expr; 2] {
    [
        Expr::Meta {
            key: NFT_META_L4PROTO,
        },
        eq(&[p]),
    ]
}

pub(crate) fn rule(parts: &[&[Expr]], verdict: Verdict) -> Vec<Expr> {
    let mut v: Vec<Expr> = parts.iter().flat_map(|p| p.iter().cloned()).collect();
    v.push(Expr::Verdict(verdict));
    v
}

/// The base chain's rules: dispatch each port to its chain; drop any other tupperware port.
pub fn base_rules() -> Vec<Vec<Expr>> {
    let iifname = Expr::Meta {
        key: NFT_META_IIFNAME,
    };
    vec![
        vec![
            iifname.clone(),
            Expr::VerdictMap {
                set: PORTS_MAP.into(),
                set_id: PORTS_SET_ID,
            },
        ],
        // `iifname "tw*"`: a prefix compare of the name's first bytes.
        rule(&[&[iifname, eq(PORT_PREFIX.as_bytes())]], Verdict::Drop),
    ]
}

/// `arp FIELD != VALUE drop` for the ARP header field at `offset`.
fn arp_field(arp: &[Expr], offset: u32, value: &[u8]) -> Vec<Expr> {
    let len = value.len() as u32;
    rule(
        &[arp, &[payload(Base::Network, offset, len), neq(value)]],
        Verdict::Drop,
    )
}

/// One port's rules: only its own MAC and IPv4 address, no router traffic, nothing but ARP and IPv4.
pub fn port_rules(id: &PortIdentity) -> Vec<Vec<Expr>> {
    let ip = id.ip.octets();
    let arp = ether_type(ETH_P_ARP);
    let ipv4 = ether_type(ETH_P_IP);
    vec![
        // ether saddr != MAC drop
        rule(&[&[payload(Base::Link, 6, 6), neq(&id.mac)]], Verdict::Drop),
        // ARP for anything but Ethernet/IPv4 is dropped (the offsets below assume it):
        // arp htype != 1 drop; arp ptype != ip drop; arp hlen != 6 drop; arp plen != 4 drop
        arp_field(&arp, 0, &ARP_ETHER_IPV4[0..2]),
        arp_field(&arp, 2, &ARP_ETHER_IPV4[2..4]),
        arp_field(&arp, 4, &ARP_ETHER_IPV4[4..5]),
        arp_field(&arp, 5, &ARP_ETHER_IPV4[5..6]),
        // arp saddr ether != MAC drop
        rule(
            &[&arp, &[payload(Base::Network, 8, 6), neq(&id.mac)]],
            Verdict::Drop,
        ),
        // arp saddr ip != IP drop
        rule(
            &[&arp, &[payload(Base::Network, 14, 4), neq(&ip)]],
            Verdict::Drop,
        ),
        rule(&[&arp], Verdict::Accept),
        // ip saddr != IP drop
        rule(
            &[&ipv4, &[payload(Base::Network, 12, 4), neq(&ip)]],
            Verdict::Drop,
        ),
        // udp sport 67 drop (DHCP server replies)
        rule(
            &[
                &ipv4,
                &l4proto(IPPROTO_UDP),
                &[
                    payload(Base::Transport, 0, 2),
                    eq(&DHCP_SERVER_PORT.to_be_bytes()),
                ],
            ],
            Verdict::Drop,
        ),
        // icmp type redirect drop
        rule(
            &[
                &ipv4,
                &l4proto(IPPROTO_ICMP),
                &[payload(Base::Transport, 0, 1), eq(&[ICMP_REDIRECT])],
            ],
            Verdict::Drop,
        ),
        // icmp type router-advertisement drop
        rule(
            &[
                &ipv4,
                &l4proto(IPPROTO_ICMP),
                &[
                    payload(Base::Transport, 0, 1),
                    eq(&[ICMP_ROUTER_ADVERTISEMENT]),
                ],
            ],
            Verdict::Drop,
        ),
        rule(&[&ipv4], Verdict::Accept),
        // IPv6, VLAN tags, STP and every other ethertype
        rule(&[], Verdict::Drop),
    ]
}

/// Table, map and base chain (created if missing, base rules replaced), then
/// the port's chain (created if missing, rules replaced) and its map element.
/// One batch: the kernel applies all of it or nothing, one batch at a time.
#[cfg(test)]
pub fn install_port(host_if: &str, id: &PortIdentity) -> Vec<Message> {
    install_port_with(host_if, id, true)
}

/// The base chain's rules, each with its tag (see `crate::nat::ruleset::rule_tag`).
fn tagged_base_rules() -> Vec<(Message, Vec<u8>)> {
    base_rules()
        .iter()
        .enumerate()
        .map(|(n, r)| {
            let mut m = rule_msg(BASE_CHAIN, n + 1, r);
            let tag = crate::nat::ruleset::rule_tag(n + 1, m.attrs.bytes());
            m.attrs.put(NFTA_RULE_USERDATA, &tag);
            (m, tag)
        })
        .collect()
}

/// What the table's shared part (the base chain and its rules) looks like
/// when this build wrote it.
pub fn base_shape() -> crate::nat::ruleset::Shape {
    use crate::nat::ruleset::{ChainShape, Shape};
    Shape {
        chains: vec![ChainShape {
            name: BASE_CHAIN.to_string(),
            base: Some((
                HOOK_PREROUTING,
                PRIORITY_FILTER,
                super::expr::NF_ACCEPT as u32,
                "filter".to_string(),
            )),
        }],
        rules: vec![(
            BASE_CHAIN.to_string(),
            tagged_base_rules().into_iter().map(|(_, t)| t).collect(),
        )],
    }
}

/// [`install_port`]; with `rewrite_base` false the base chain's rules are
/// left as they are (issue 11: the caller read them back and found them
/// exactly as [`base_shape`] says, so nothing is deleted on this path).
pub fn install_port_with(host_if: &str, id: &PortIdentity, rewrite_base: bool) -> Vec<Message> {
    let chain = port_chain(host_if);
    let mut msgs = vec![table_msg(), ports_map_msg(), base_chain_msg()];
    if rewrite_base {
        msgs.push(flush_msg(BASE_CHAIN));
        msgs.extend(tagged_base_rules().into_iter().map(|(m, _)| m));
    }
    msgs.push(chain_msg(
        MsgType::NewChain,
        &chain,
        format!("create chain {chain}"),
    ));
    msgs.push(flush_msg(&chain));
    for (n, r) in port_rules(id).iter().enumerate() {
        msgs.push(rule_msg(&chain, n + 1, r));
    }
    msgs.push(elem_msg(
        MsgType::NewSetElem,
        host_if,
        format!("add {host_if} to map {PORTS_MAP}"),
    ));
    msgs
}

/// Flush the port's chain, delete its map element, delete the chain.
pub fn remove_port(host_if: &str) -> Vec<Message> {
    let chain = port_chain(host_if);
    vec![
        flush_msg(&chain),
        elem_msg(
            MsgType::DelSetElem,
            host_if,
            format!("delete {host_if} from map {PORTS_MAP}"),
        ),
        chain_msg(MsgType::DelChain, &chain, format!("delete chain {chain}")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::nfnl::Attrs;

    const ID: PortIdentity = PortIdentity {
        mac: [0x02, 0x42, 10, 88, 0, 2],
        ip: Ipv4Addr::new(10, 88, 0, 2),
    };

    /// `ether saddr != 02:42:0a:58:00:02 drop`, byte for byte as the kernel receives it.
    #[test]
    fn known_rule_bytes() {
        let rules = port_rules(&ID);
        let mut a = Attrs::new();
        put_expressions(&mut a, NFTA_RULE_EXPRESSIONS, &rules[0]);
        #[rustfmt::skip]
        let expect: &[u8] = &[
            152, 0, 4, 0x80,                       // NFTA_RULE_EXPRESSIONS (nested)
              52, 0, 1, 0x80,                      // NFTA_LIST_ELEM
                12, 0, 1, 0, b'p', b'a', b'y', b'l', b'o', b'a', b'd', 0,
                36, 0, 2, 0x80,                    // NFTA_EXPR_DATA
                  8, 0, 1, 0, 0, 0, 0, 1,          // dreg 1
                  8, 0, 2, 0, 0, 0, 0, 0,          // base: link layer
                  8, 0, 3, 0, 0, 0, 0, 6,          // offset 6
                  8, 0, 4, 0, 0, 0, 0, 6,          // len 6
              48, 0, 1, 0x80,
                8, 0, 1, 0, b'c', b'm', b'p', 0,
                36, 0, 2, 0x80,
                  8, 0, 1, 0, 0, 0, 0, 1,          // sreg 1
                  8, 0, 2, 0, 0, 0, 0, 1,          // op: neq
                  16, 0, 3, 0x80,                  // NFTA_CMP_DATA
                    10, 0, 1, 0, 0x02, 0x42, 10, 88, 0, 2, 0, 0,
              48, 0, 1, 0x80,
                14, 0, 1, 0, b'i', b'm', b'm', b'e', b'd', b'i', b'a', b't', b'e', 0, 0, 0,
                28, 0, 2, 0x80,
                  8, 0, 1, 0, 0, 0, 0, 0,          // dreg: verdict
                  16, 0, 2, 0x80,                  // NFTA_IMMEDIATE_DATA
                    12, 0, 2, 0x80,                // NFTA_DATA_VERDICT
                      8, 0, 1, 0, 0, 0, 0, 0,      // NF_DROP
        ];
        assert_eq!(a.bytes(), expect);
    }

    #[test]
    fn install_is_one_batch_ending_with_the_element() {
        let msgs = install_port("tw0123456789ab", &ID);
        assert_eq!(msgs[0].ty, MsgType::NewTable);
        assert_eq!(msgs.last().map(|m| m.ty), Some(MsgType::NewSetElem));
        // 4 setup messages, 2 base rules, chain + flush, the port rules, the element.
        assert_eq!(msgs.len(), 4 + 2 + 2 + port_rules(&ID).len() + 1);
        let kinds: Vec<_> = remove_port("tw0123456789ab").iter().map(|m| m.ty).collect();
        assert_eq!(
            kinds,
            [MsgType::DelRule, MsgType::DelSetElem, MsgType::DelChain]
        );
    }

    #[test]
    fn map_key_is_padded_to_ifnamsiz() {
        assert_eq!(ifname_key("tw1"), b"tw1\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec());
    }
}
