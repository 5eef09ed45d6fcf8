//! The `ip tupperware` table (issue 11): outbound masquerade, forwarding
//! restricted to the bridge, and published ports as kernel DNAT, as lists of
//! nf_tables messages.
//!
//! ```text
//! table ip tupperware {
//!     set uplinks { type ifname; }            # forwarding turned on by tupper-net
//!     map tcp-ports { type inet_service : verdict; }
//!     map udp-ports { type inet_service : verdict; }
//!     chain published {
//!         meta l4proto tcp th dport vmap @tcp-ports
//!         meta l4proto udp th dport vmap @udp-ports
//!     }
//!     chain prerouting { type nat hook prerouting priority dstnat; fib daddr type local jump published }
//!     chain output     { type nat hook output priority dstnat;     fib daddr type local jump published }
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat;
//!         iifname BRIDGE oifname != BRIDGE masquerade      # outbound (if configured)
//!         iifname BRIDGE oifname BRIDGE masquerade         # hairpin between containers
//!         oifname BRIDGE ip saddr 127.0.0.0/8 masquerade   # hairpin from the host's loopback
//!     }
//!     chain forward {
//!         type filter hook forward priority filter;
//!         iifname @uplinks oifname != BRIDGE drop          # forwarding only for the bridge
//!         iifname BRIDGE oifname != BRIDGE ct state new drop   # (outbound off only)
//!     }
//!     chain pub-tcp-8080 { [ip daddr HOSTIP] dnat to CONTAINER:PORT }
//! }
//! ```

use std::net::Ipv4Addr;

use crate::filter::expr::{put_expressions, put_verdict, Base, Expr, Verdict, NFTA_DATA_VALUE};
use crate::filter::expr::{
    NFT_META_IIFNAME, NFT_META_L4PROTO, NFT_META_OIFNAME, NFT_REG_1, NFT_REG_2,
};
use crate::filter::nfnl::{Message, MsgType, NFPROTO_IPV4};
use crate::filter::ruleset::{eq, ifname_key, neq, payload, rule};
use crate::filter::ruleset::{
    NFTA_CHAIN_HOOK, NFTA_CHAIN_NAME, NFTA_CHAIN_POLICY, NFTA_CHAIN_TABLE, NFTA_CHAIN_TYPE,
    NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY, NFTA_LIST_ELEM, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS,
    NFTA_RULE_TABLE, NFTA_SET_DATA_TYPE, NFTA_SET_ELEM_DATA, NFTA_SET_ELEM_KEY,
    NFTA_SET_ELEM_LIST_ELEMENTS, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_FLAGS,
    NFTA_SET_ID, NFTA_SET_KEY_LEN, NFTA_SET_KEY_TYPE, NFTA_SET_NAME, NFTA_SET_TABLE,
    NFTA_SET_USERDATA, NFTA_TABLE_NAME, NFT_DATA_VERDICT, NFT_SET_MAP, SET_USERDATA, TYPE_IFNAME,
};
use proto::ports::{PortSpec, Protocol};

pub const TABLE: &str = "tupperware";
pub const PUBLISHED: &str = "published";
pub const UPLINKS: &str = "uplinks";
const IFNAMSIZ: u32 = 16;
/// nft's datatype id of `inet_service`.
const TYPE_INET_SERVICE: u32 = 13;
// NF_INET_* hooks and priorities.
const HOOK_PREROUTING: u32 = 0;
const HOOK_FORWARD: u32 = 2;
const HOOK_OUTPUT: u32 = 3;
const HOOK_POSTROUTING: u32 = 4;
const PRIO_DSTNAT: i32 = -100;
const PRIO_FILTER: i32 = 0;
const PRIO_SRCNAT: i32 = 100;
const RTN_LOCAL: u32 = 2;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// NF_CT_STATE_BIT(IP_CT_NEW).
const CT_STATE_NEW: u32 = 8;
// Transaction-local set ids.
const UPLINKS_ID: u32 = 1;
const TCP_ID: u32 = 2;
const UDP_ID: u32 = 3;

/// The base chains of the fixed part: name, type, hook, priority.
const BASE_CHAINS: [(&str, &str, u32, i32); 4] = [
    ("prerouting", "nat", HOOK_PREROUTING, PRIO_DSTNAT),
    ("output", "nat", HOOK_OUTPUT, PRIO_DSTNAT),
    ("postrouting", "nat", HOOK_POSTROUTING, PRIO_SRCNAT),
    ("forward", "filter", HOOK_FORWARD, PRIO_FILTER),
];
const NF_ACCEPT_POLICY: u32 = crate::filter::expr::NF_ACCEPT as u32;
const NFTA_RULE_USERDATA: u16 = 7;
/// NFTNL_UDATA_RULE_COMMENT: `nft list` shows the tag as the rule's comment.
const UDATA_RULE_COMMENT: u8 = 0;

/// The userdata of rule `n` of the fixed part, built from its message's
/// attributes (table, chain, expressions): the comment
/// `tupperware:<FNV-1a 64 of them>` in nftnl's userdata format. A rule whose
/// tag is not what this build would write was not written by it (an
/// administrator's, an older build's, or a replaced one).
pub fn rule_tag(n: usize, attrs: &[u8]) -> Vec<u8> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in (n as u64).to_le_bytes().iter().chain(attrs) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut comment = format!("tupperware:{h:016x}").into_bytes();
    comment.push(0);
    let mut v = vec![UDATA_RULE_COMMENT, comment.len() as u8];
    v.extend_from_slice(&comment);
    v
}

/// A chain of the fixed part: its name and, for a base chain, its hook,
/// priority, policy and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainShape {
    pub name: String,
    pub base: Option<(u32, i32, u32, String)>,
}

/// What the fixed part of the table looks like: its chains, and the tags of
/// each fixed chain's rules in order. Built from what [`setup`] writes, or
/// read back from the kernel (`crate::nat::observe`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub chains: Vec<ChainShape>,
    pub rules: Vec<(String, Vec<Vec<u8>>)>,
}

impl Shape {
    /// Whether `seen` (the table as read from the kernel) holds this fixed
    /// part exactly: every chain with its hook, priority, policy and type,
    /// and in every fixed chain exactly these rules in this order, nothing
    /// more. Other chains (the published ports') are not looked at.
    pub fn holds_in(&self, seen: &Shape) -> bool {
        let chains_ok = self
            .chains
            .iter()
            .all(|want| seen.chains.iter().any(|c| c == want));
        let rules_ok = self.rules.iter().all(|(chain, tags)| {
            let got: Vec<&Vec<u8>> = seen
                .rules
                .iter()
                .filter(|(c, _)| c == chain)
                .flat_map(|(_, t)| t)
                .collect();
            got.len() == tags.len() && got.iter().zip(tags).all(|(a, b)| *a == b)
        });
        chains_ok && rules_ok
    }

    /// The base chains of `seen` whose hook, priority or type differ from
    /// ours: an update cannot change those, they are deleted and made again.
    pub fn rehooked<'a>(&'a self, seen: &Shape) -> Vec<&'a str> {
        let fixed = |b: &Option<(u32, i32, u32, String)>| {
            b.as_ref().map(|(h, p, _, t)| (*h, *p, t.clone()))
        };
        self.chains
            .iter()
            .filter(|want| {
                seen.chains
                    .iter()
                    .any(|c| c.name == want.name && fixed(&c.base) != fixed(&want.base))
            })
            .map(|c| c.name.as_str())
            .collect()
    }
}

/// Flush and delete chain `name` (before it is made again).
pub fn drop_chain(name: &str) -> [Message; 2] {
    [flush_msg(name), chain_msg(MsgType::DelChain, name)]
}

fn ports_map(p: Protocol) -> (&'static str, u32, u8) {
    match p {
        Protocol::Tcp => ("tcp-ports", TCP_ID, IPPROTO_TCP),
        Protocol::Udp => ("udp-ports", UDP_ID, IPPROTO_UDP),
    }
}

/// The chain of one published host port.
pub fn port_chain(protocol: Protocol, host_port: u16) -> String {
    format!("pub-{}-{host_port}", protocol.as_str())
}

fn msg(ty: MsgType, what: impl Into<String>) -> Message {
    Message::new(ty, NFPROTO_IPV4, what)
}

fn table_msg() -> Message {
    let mut m = msg(MsgType::NewTable, "create table ip tupperware");
    m.attrs.put_str(NFTA_TABLE_NAME, TABLE);
    m
}

fn chain_msg(ty: MsgType, name: &str) -> Message {
    let verb = if ty == MsgType::NewChain {
        "create"
    } else {
        "delete"
    };
    let mut m = msg(ty, format!("{verb} chain ip tupperware {name}"));
    m.attrs
        .put_str(NFTA_CHAIN_TABLE, TABLE)
        .put_str(NFTA_CHAIN_NAME, name);
    m
}

fn base_chain_msg(name: &str, kind: &str, hook: u32, priority: i32) -> Message {
    let mut m = chain_msg(MsgType::NewChain, name);
    m.attrs
        .nest(NFTA_CHAIN_HOOK, |h| {
            h.put_be32(NFTA_HOOK_HOOKNUM, hook)
                .put_be32(NFTA_HOOK_PRIORITY, priority as u32);
        })
        .put_be32(NFTA_CHAIN_POLICY, crate::filter::expr::NF_ACCEPT as u32)
        .put_str(NFTA_CHAIN_TYPE, kind);
    m
}

fn set_msg(name: &str, id: u32, key_type: u32, key_len: u32, map: bool) -> Message {
    let mut m = msg(MsgType::NewSet, format!("create set ip tupperware {name}"));
    m.attrs
        .put_str(NFTA_SET_TABLE, TABLE)
        .put_str(NFTA_SET_NAME, name)
        .put_be32(NFTA_SET_FLAGS, if map { NFT_SET_MAP } else { 0 })
        .put_be32(NFTA_SET_KEY_TYPE, key_type)
        .put_be32(NFTA_SET_KEY_LEN, key_len);
    if map {
        m.attrs.put_be32(NFTA_SET_DATA_TYPE, NFT_DATA_VERDICT);
    }
    m.attrs.put_be32(NFTA_SET_ID, id);
    if key_type == TYPE_IFNAME {
        m.attrs.put(NFTA_SET_USERDATA, &SET_USERDATA);
    }
    m
}

fn flush_msg(chain: &str) -> Message {
    let mut m = msg(
        MsgType::DelRule,
        format!("flush chain ip tupperware {chain}"),
    );
    m.attrs
        .put_str(NFTA_RULE_TABLE, TABLE)
        .put_str(NFTA_RULE_CHAIN, chain);
    m
}

fn rule_msg(chain: &str, n: usize, exprs: &[Expr]) -> Message {
    let mut m = msg(
        MsgType::NewRule,
        format!("add rule {n} of chain ip tupperware {chain}"),
    );
    m.attrs
        .put_str(NFTA_RULE_TABLE, TABLE)
        .put_str(NFTA_RULE_CHAIN, chain);
    put_expressions(&mut m.attrs, NFTA_RULE_EXPRESSIONS, exprs);
    m
}

/// A rule of the fixed part, carrying its [`rule_tag`] as its userdata.
fn tagged_rule_msg(chain: &str, n: usize, exprs: &[Expr]) -> (Message, Vec<u8>) {
    let mut m = rule_msg(chain, n, exprs);
    let tag = rule_tag(n, m.attrs.bytes());
    m.attrs.put(NFTA_RULE_USERDATA, &tag);
    (m, tag)
}

fn elem_msg(ty: MsgType, set: &str, key: &[u8], data: Option<Verdict>, what: String) -> Message {
    let mut m = msg(ty, what);
    m.attrs
        .put_str(NFTA_SET_ELEM_LIST_TABLE, TABLE)
        .put_str(NFTA_SET_ELEM_LIST_SET, set)
        .nest(NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
            list.nest(NFTA_LIST_ELEM, |el| {
                el.nest(NFTA_SET_ELEM_KEY, |k| {
                    k.put(NFTA_DATA_VALUE, key);
                });
                if let Some(v) = &data {
                    put_verdict(el, NFTA_SET_ELEM_DATA, v);
                }
            });
        });
    m
}

fn meta(key: u32) -> Expr {
    Expr::Meta { key }
}

fn iifname(name: &str) -> [Expr; 2] {
    [meta(NFT_META_IIFNAME), eq(&ifname_key(name))]
}

fn oifname(name: &str) -> [Expr; 2] {
    [meta(NFT_META_OIFNAME), eq(&ifname_key(name))]
}

fn oifname_not(name: &str) -> [Expr; 2] {
    [meta(NFT_META_OIFNAME), neq(&ifname_key(name))]
}

fn fib_local() -> [Expr; 2] {
    [Expr::FibDaddrType, eq(&RTN_LOCAL.to_ne_bytes())]
}

fn masquerade(parts: &[&[Expr]]) -> Vec<Expr> {
    let mut v: Vec<Expr> = parts.iter().flat_map(|p| p.iter().cloned()).collect();
    v.push(Expr::Masq);
    v
}

/// The table's fixed part, created if missing and its rules replaced: sets,
/// maps and chains, in one batch. `outbound` adds the masquerade of traffic
/// leaving through the uplinks; without it, containers start no connection
/// beyond the bridge (replies to published ports still pass).
#[cfg(test)]
pub fn setup(bridge: &str, outbound: bool) -> Vec<Message> {
    fixed(bridge, outbound).0
}

/// [`setup`]'s messages and the [`Shape`] they give the table.
pub fn fixed(bridge: &str, outbound: bool) -> (Vec<Message>, Shape) {
    let mut shape = Shape::default();
    for (name, kind, hook, priority) in BASE_CHAINS {
        shape.chains.push(ChainShape {
            name: name.to_string(),
            base: Some((hook, priority, NF_ACCEPT_POLICY, kind.to_string())),
        });
    }
    shape.chains.push(ChainShape {
        name: PUBLISHED.to_string(),
        base: None,
    });
    let mut msgs = vec![
        table_msg(),
        set_msg(UPLINKS, UPLINKS_ID, TYPE_IFNAME, IFNAMSIZ, false),
        set_msg("tcp-ports", TCP_ID, TYPE_INET_SERVICE, 2, true),
        set_msg("udp-ports", UDP_ID, TYPE_INET_SERVICE, 2, true),
        chain_msg(MsgType::NewChain, PUBLISHED),
    ];
    for (name, kind, hook, priority) in BASE_CHAINS {
        msgs.push(base_chain_msg(name, kind, hook, priority));
    }
    let mut chain = |name: &str, rules: Vec<Vec<Expr>>| {
        msgs.push(flush_msg(name));
        let mut tags = Vec::new();
        for (n, r) in rules.iter().enumerate() {
            let (m, tag) = tagged_rule_msg(name, n + 1, r);
            msgs.push(m);
            tags.push(tag);
        }
        shape.rules.push((name.to_string(), tags));
    };
    let dispatch = |p: Protocol| {
        let (set, set_id, proto) = ports_map(p);
        vec![
            meta(NFT_META_L4PROTO),
            eq(&[proto]),
            payload(Base::Transport, 2, 2),
            Expr::VerdictMap {
                set: set.into(),
                set_id,
            },
        ]
    };
    chain(
        PUBLISHED,
        vec![dispatch(Protocol::Tcp), dispatch(Protocol::Udp)],
    );
    let jump = rule(&[&fib_local()], Verdict::Jump(PUBLISHED.into()));
    chain("prerouting", vec![jump.clone()]);
    chain("output", vec![jump]);
    let mut post = Vec::new();
    if outbound {
        post.push(masquerade(&[&iifname(bridge), &oifname_not(bridge)]));
    }
    post.push(masquerade(&[&iifname(bridge), &oifname(bridge)]));
    post.push(masquerade(&[
        &oifname(bridge),
        &[payload(Base::Network, 12, 1), eq(&[127])],
    ]));
    chain("postrouting", post);
    let mut forward = vec![rule(
        &[
            &[
                meta(NFT_META_IIFNAME),
                Expr::Lookup {
                    set: UPLINKS.into(),
                    set_id: UPLINKS_ID,
                },
            ],
            &oifname_not(bridge),
        ],
        Verdict::Drop,
    )];
    if !outbound {
        forward.push(rule(
            &[
                &iifname(bridge),
                &oifname_not(bridge),
                &[
                    Expr::CtState,
                    Expr::And {
                        mask: CT_STATE_NEW.to_ne_bytes().to_vec(),
                    },
                    neq(&[0, 0, 0, 0]),
                ],
            ],
            Verdict::Drop,
        ));
    }
    chain("forward", forward);
    (msgs, shape)
}

/// Add `uplink` to the set of interfaces whose forwarding tupper-net turned on.
pub fn add_uplink(uplink: &str) -> Message {
    elem_msg(
        MsgType::NewSetElem,
        UPLINKS,
        &ifname_key(uplink),
        None,
        format!("add {uplink} to set {UPLINKS}"),
    )
}

/// The DNAT rule of one port towards `container`.
pub fn dnat_rule(port: &PortSpec, container: Ipv4Addr) -> Vec<Expr> {
    let mut v = Vec::new();
    if let Some(ip) = port.host_ip {
        v.push(payload(Base::Network, 16, 4));
        v.push(eq(&ip.octets()));
    }
    v.push(Expr::Immediate {
        reg: NFT_REG_1,
        data: container.octets().to_vec(),
    });
    v.push(Expr::Immediate {
        reg: NFT_REG_2,
        data: port.container_port.to_be_bytes().to_vec(),
    });
    v.push(Expr::Dnat);
    v
}

/// One port: its chain (created, rules replaced) and its map element, one batch.
pub fn publish(port: &PortSpec, container: Ipv4Addr) -> Vec<Message> {
    let chain = port_chain(port.protocol, port.host_port);
    let (set, _, _) = ports_map(port.protocol);
    vec![
        chain_msg(MsgType::NewChain, &chain),
        flush_msg(&chain),
        rule_msg(&chain, 1, &dnat_rule(port, container)),
        elem_msg(
            MsgType::NewSetElem,
            set,
            &port.host_port.to_be_bytes(),
            Some(Verdict::Jump(chain.clone())),
            format!("add port {} to map {set}", port.host_port),
        ),
    ]
}

/// Undo [`publish`]: the element, the chain's rule, the chain.
pub fn unpublish(protocol: Protocol, host_port: u16) -> Vec<Message> {
    let chain = port_chain(protocol, host_port);
    let (set, _, _) = ports_map(protocol);
    vec![
        elem_msg(
            MsgType::DelSetElem,
            set,
            &host_port.to_be_bytes(),
            None,
            format!("delete port {host_port} from map {set}"),
        ),
        flush_msg(&chain),
        chain_msg(MsgType::DelChain, &chain),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_shapes() {
        let on = setup("tupper0", true);
        let off = setup("tupper0", false);
        assert_eq!(on[0].ty, MsgType::NewTable);
        assert!(on.iter().all(|m| m.family == NFPROTO_IPV4));
        // Outbound on: one masquerade more; off: one forward drop more.
        assert_eq!(on.len(), off.len());
        assert!(on
            .iter()
            .any(|m| m.what == "add rule 3 of chain ip tupperware postrouting"));
        assert!(off
            .iter()
            .any(|m| m.what == "add rule 2 of chain ip tupperware forward"));
    }

    /// What the kernel would show after applying `setup`.
    fn as_written(bridge: &str, outbound: bool) -> Shape {
        fixed(bridge, outbound).1
    }

    #[test]
    fn the_table_as_written_is_left_alone() {
        let (msgs, want) = fixed("tupper0", true);
        assert!(want.holds_in(&as_written("tupper0", true)));
        assert!(want.rehooked(&as_written("tupper0", true)).is_empty());
        // Every rule carries its tag, and the tags differ.
        let rules: Vec<_> = msgs.iter().filter(|m| m.ty == MsgType::NewRule).collect();
        let tags: Vec<_> = want.rules.iter().flat_map(|(_, t)| t).collect();
        assert_eq!(rules.len(), tags.len());
        let mut unique = tags.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), tags.len());
        // Published ports' chains are not the fixed part's business.
        let mut seen = as_written("tupper0", true);
        seen.chains.push(ChainShape {
            name: port_chain(Protocol::Tcp, 8080),
            base: None,
        });
        seen.rules
            .push((port_chain(Protocol::Tcp, 8080), vec![vec![]]));
        assert!(want.holds_in(&seen));
    }

    #[test]
    fn hostile_a_missing_or_altered_table_is_rewritten() {
        let want = as_written("tupper0", true);
        // After `nft flush ruleset` or an uninstall: nothing.
        assert!(!want.holds_in(&Shape::default()));
        // Another configuration (outbound off, another bridge).
        assert!(!want.holds_in(&as_written("tupper0", false)));
        assert!(!want.holds_in(&as_written("tupper1", true)));
        // An administrator's rule put before ours (nft writes no tag, or its comment).
        let mut seen = as_written("tupper0", true);
        let fwd = seen.rules.iter_mut().find(|(c, _)| c == "forward").unwrap();
        fwd.1.insert(0, Vec::new());
        assert!(!want.holds_in(&seen));
        // A rule of ours replaced by another (its tag is gone) or removed.
        let mut seen = as_written("tupper0", true);
        let post = seen
            .rules
            .iter_mut()
            .find(|(c, _)| c == "postrouting")
            .unwrap();
        post.1[0] = b"\0\x05other".to_vec();
        assert!(!want.holds_in(&seen));
        let mut seen = as_written("tupper0", true);
        seen.rules
            .iter_mut()
            .find(|(c, _)| c == "forward")
            .unwrap()
            .1
            .pop();
        assert!(!want.holds_in(&seen));
        // The forward chain's policy turned to drop, or the chain hooked elsewhere.
        let mut seen = as_written("tupper0", true);
        let fwd = seen
            .chains
            .iter_mut()
            .find(|c| c.name == "forward")
            .unwrap();
        fwd.base.as_mut().unwrap().2 = 0;
        assert!(!want.holds_in(&seen));
        assert!(
            want.rehooked(&seen).is_empty(),
            "a policy is updated in place"
        );
        let mut seen = as_written("tupper0", true);
        let fwd = seen
            .chains
            .iter_mut()
            .find(|c| c.name == "forward")
            .unwrap();
        fwd.base.as_mut().unwrap().1 = 10;
        assert!(!want.holds_in(&seen));
        assert_eq!(want.rehooked(&seen), ["forward"]);
        // The published chain made a base chain.
        let mut seen = as_written("tupper0", true);
        let p = seen
            .chains
            .iter_mut()
            .find(|c| c.name == PUBLISHED)
            .unwrap();
        p.base = Some((HOOK_PREROUTING, 0, 1, "nat".into()));
        assert!(!want.holds_in(&seen));
        assert_eq!(want.rehooked(&seen), [PUBLISHED]);
    }

    #[test]
    fn tags_are_nft_comments() {
        let t = rule_tag(1, b"abc");
        assert_eq!(t[0], UDATA_RULE_COMMENT);
        assert_eq!(t[1] as usize, t.len() - 2);
        assert_eq!(t.last(), Some(&0));
        assert!(t[2..].starts_with(b"tupperware:"));
        assert_ne!(rule_tag(1, b"abc"), rule_tag(2, b"abc"));
        assert_ne!(rule_tag(1, b"abc"), rule_tag(1, b"abd"));
    }

    #[test]
    fn publish_and_unpublish() {
        let p = PortSpec::parse("127.0.0.1:8080:80/udp").unwrap();
        let m = publish(&p, Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(m.len(), 4);
        assert_eq!(m.last().map(|m| m.ty), Some(MsgType::NewSetElem));
        let r = dnat_rule(&p, Ipv4Addr::new(10, 88, 0, 2));
        assert_eq!(r[1], eq(&[127, 0, 0, 1]));
        assert_eq!(r[4], Expr::Dnat);
        assert_eq!(port_chain(Protocol::Udp, 8080), "pub-udp-8080");
        let kinds: Vec<_> = unpublish(Protocol::Udp, 8080)
            .iter()
            .map(|m| m.ty)
            .collect();
        assert_eq!(
            kinds,
            [MsgType::DelSetElem, MsgType::DelRule, MsgType::DelChain]
        );
    }
}
