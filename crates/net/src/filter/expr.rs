//! nf_tables expressions (`meta`, `payload`, `cmp`, `immediate`, `lookup`)
//! and their netlink encoding inside `NFTA_RULE_EXPRESSIONS`.

use super::nfnl::Attrs;

// enum nft_registers: the verdict register and the first 16-byte data register.
pub const NFT_REG_VERDICT: u32 = 0;
pub const NFT_REG_1: u32 = 1;

// Verdicts (NF_DROP/NF_ACCEPT and enum nft_verdicts).
pub const NF_DROP: i32 = 0;
pub const NF_ACCEPT: i32 = 1;
pub const NFT_JUMP: i32 = -3;

// enum nft_meta_keys.
pub const NFT_META_IIFNAME: u32 = 6;
pub const NFT_META_L4PROTO: u32 = 16;
pub const NFT_META_OIFNAME: u32 = 7;
// Issue 11: the second 16-byte data register, for the NAT port.
pub const NFT_REG_2: u32 = 2;

/// enum nft_payload_bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Link = 0,
    Network = 1,
    Transport = 2,
}

/// enum nft_cmp_ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Jump(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta load KEY => reg 1`
    Meta { key: u32 },
    /// `payload load LEN b @ BASE + OFFSET => reg 1`
    Payload { base: Base, offset: u32, len: u32 },
    /// `cmp OP reg 1 DATA`
    Cmp { op: CmpOp, data: Vec<u8> },
    /// `immediate reg 0 VERDICT`
    Verdict(Verdict),
    /// `lookup reg 1 set NAME dreg 0` (a verdict map)
    VerdictMap { set: String, set_id: u32 },
    // Issue 11 (the `ip tupperware` NAT table).
    /// `lookup reg 1 set NAME` (membership in a plain set)
    Lookup { set: String, set_id: u32 },
    /// `immediate reg REG DATA`
    Immediate { reg: u32, data: Vec<u8> },
    /// `nat dnat ip addr_min reg 1 proto_min reg 2`
    Dnat,
    /// `masq`
    Masq,
    /// `fib daddr type => reg 1` (compare with `RTN_LOCAL`, host order)
    FibDaddrType,
    /// `ct load state => reg 1`
    CtState,
    /// `bitwise reg 1 = (reg 1 & MASK) ^ 0`
    And { mask: Vec<u8> },
}

// NFTA_LIST_ELEM, NFTA_EXPR_*, NFTA_DATA_*, NFTA_VERDICT_*.
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
pub const NFTA_DATA_VALUE: u16 = 1;
pub const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// `NFTA_DATA_VERDICT { code, chain }` into `a`.
pub fn put_verdict(a: &mut Attrs, ty: u16, v: &Verdict) {
    a.nest(ty, |d| {
        d.nest(NFTA_DATA_VERDICT, |vd| {
            let code = match v {
                Verdict::Accept => NF_ACCEPT,
                Verdict::Drop => NF_DROP,
                Verdict::Jump(_) => NFT_JUMP,
            };
            vd.put_be32(NFTA_VERDICT_CODE, code as u32);
            if let Verdict::Jump(chain) = v {
                vd.put_str(NFTA_VERDICT_CHAIN, chain);
            }
        });
    });
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } => "meta",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Verdict(_) => "immediate",
            Expr::VerdictMap { .. } | Expr::Lookup { .. } => "lookup",
            Expr::Immediate { .. } => "immediate",
            Expr::Dnat => "nat",
            Expr::Masq => "masq",
            Expr::FibDaddrType => "fib",
            Expr::CtState => "ct",
            Expr::And { .. } => "bitwise",
        }
    }

    fn put_data(&self, a: &mut Attrs) {
        match self {
            Expr::Meta { key } => {
                // NFTA_META_DREG = 1, NFTA_META_KEY = 2
                a.put_be32(1, NFT_REG_1).put_be32(2, *key);
            }
            Expr::Payload { base, offset, len } => {
                // NFTA_PAYLOAD_DREG 1, _BASE 2, _OFFSET 3, _LEN 4
                a.put_be32(1, NFT_REG_1)
                    .put_be32(2, *base as u32)
                    .put_be32(3, *offset)
                    .put_be32(4, *len);
            }
            Expr::Cmp { op, data } => {
                // NFTA_CMP_SREG 1, _OP 2, _DATA 3 { NFTA_DATA_VALUE }
                a.put_be32(1, NFT_REG_1)
                    .put_be32(2, *op as u32)
                    .nest(3, |d| {
                        d.put(NFTA_DATA_VALUE, data);
                    });
            }
            Expr::Verdict(v) => {
                // NFTA_IMMEDIATE_DREG 1, _DATA 2
                a.put_be32(1, NFT_REG_VERDICT);
                put_verdict(a, 2, v);
            }
            Expr::VerdictMap { set, set_id } => {
                // NFTA_LOOKUP_SET 1, _SREG 2, _DREG 3, _SET_ID 4
                a.put_str(1, set)
                    .put_be32(2, NFT_REG_1)
                    .put_be32(3, NFT_REG_VERDICT)
                    .put_be32(4, *set_id);
            }
            Expr::Lookup { set, set_id } => {
                a.put_str(1, set)
                    .put_be32(2, NFT_REG_1)
                    .put_be32(4, *set_id);
            }
            Expr::Immediate { reg, data } => {
                a.put_be32(1, *reg).nest(2, |d| {
                    d.put(NFTA_DATA_VALUE, data);
                });
            }
            Expr::Dnat => {
                // NFTA_NAT_TYPE 1 (NFT_NAT_DNAT), _FAMILY 2 (NFPROTO_IPV4),
                // _REG_ADDR_MIN 3, _REG_PROTO_MIN 5
                a.put_be32(1, 1)
                    .put_be32(2, 2)
                    .put_be32(3, NFT_REG_1)
                    .put_be32(5, NFT_REG_2);
            }
            Expr::Masq => {}
            Expr::FibDaddrType => {
                // NFTA_FIB_DREG 1, _RESULT 2 (NFT_FIB_RESULT_ADDRTYPE), _FLAGS 3 (NFTA_FIB_F_DADDR)
                a.put_be32(1, NFT_REG_1).put_be32(2, 3).put_be32(3, 1 << 1);
            }
            Expr::CtState => {
                // NFTA_CT_DREG 1, _KEY 2 (NFT_CT_STATE)
                a.put_be32(1, NFT_REG_1).put_be32(2, 0);
            }
            Expr::And { mask } => {
                // NFTA_BITWISE_SREG 1, _DREG 2, _LEN 3, _MASK 4, _XOR 5
                let zero = vec![0u8; mask.len()];
                a.put_be32(1, NFT_REG_1)
                    .put_be32(2, NFT_REG_1)
                    .put_be32(3, mask.len() as u32)
                    .nest(4, |d| {
                        d.put(NFTA_DATA_VALUE, mask);
                    })
                    .nest(5, |d| {
                        d.put(NFTA_DATA_VALUE, &zero);
                    });
            }
        }
    }
}

/// `NFTA_RULE_EXPRESSIONS`: the list of expressions of one rule.
pub fn put_expressions(a: &mut Attrs, ty: u16, exprs: &[Expr]) {
    a.nest(ty, |list| {
        for e in exprs {
            list.nest(NFTA_LIST_ELEM, |el| {
                el.put_str(NFTA_EXPR_NAME, e.name());
                el.nest(NFTA_EXPR_DATA, |d| e.put_data(d));
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmp_encoding() {
        let mut a = Attrs::new();
        Expr::Cmp {
            op: CmpOp::Neq,
            data: vec![0x08, 0x06],
        }
        .put_data(&mut a);
        assert_eq!(
            a.bytes(),
            &[
                8, 0, 1, 0, 0, 0, 0, 1, // sreg 1
                8, 0, 2, 0, 0, 0, 0, 1, // op neq
                12, 0, 3, 0x80, 6, 0, 1, 0, 8, 6, 0, 0, // data { value 0806 }
            ][..]
        );
    }

    #[test]
    fn jump_verdict_encoding() {
        let mut a = Attrs::new();
        Expr::Verdict(Verdict::Jump("c".into())).put_data(&mut a);
        assert_eq!(
            a.bytes(),
            &[
                8, 0, 1, 0, 0, 0, 0, 0, // dreg 0 (verdict)
                24, 0, 2, 0x80, // NFTA_IMMEDIATE_DATA
                20, 0, 2, 0x80, // NFTA_DATA_VERDICT
                8, 0, 1, 0, 0xff, 0xff, 0xff, 0xfd, // NFT_JUMP
                6, 0, 2, 0, b'c', 0, 0, 0, // chain "c"
            ][..]
        );
    }
}
