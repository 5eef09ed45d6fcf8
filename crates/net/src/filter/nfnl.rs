//! A minimal encoder for nf_tables netlink messages: netlink headers, the
//! nfnetlink header, (nested) attributes, and batches of messages.
//!
//! Byte order: the netlink and attribute headers are host order; every
//! nf_tables integer attribute is big-endian (network order).

/// `NETLINK_NETFILTER` protocol number.
pub const NETLINK_NETFILTER: i32 = 12;
/// nf_tables subsystem of nfnetlink.
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub const NFNL_MSG_BATCH_END: u16 = 0x11;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
pub const NLA_F_NESTED: u16 = 0x8000;

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// NLM_F_ROOT | NLM_F_MATCH.
pub const NLM_F_DUMP: u16 = 0x300;

/// Address families of nf_tables tables.
pub const NFPROTO_UNSPEC: u8 = 0;
pub const NFPROTO_BRIDGE: u8 = 7;
pub const NFPROTO_IPV4: u8 = 2;

/// nf_tables message types (`enum nf_tables_msg_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum MsgType {
    NewTable = 0,
    NewChain = 3,
    DelChain = 5,
    NewRule = 6,
    DelRule = 8,
    NewSet = 9,
    NewSetElem = 12,
    DelSetElem = 14,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Attributes being written into a buffer; nests are closed by [`Attrs::nest`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attrs {
    buf: Vec<u8>,
}

impl Attrs {
    pub fn new() -> Attrs {
        Attrs::default()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// One attribute with a raw payload, padded to 4 bytes.
    pub fn put(&mut self, ty: u16, payload: &[u8]) -> &mut Self {
        // Attribute lengths are u16; everything we build is far smaller.
        let len = (4 + payload.len()).min(u16::MAX as usize) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    pub fn put_be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }

    /// A NUL-terminated string.
    pub fn put_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.put(ty, &v)
    }

    /// A nested attribute (`NLA_F_NESTED` set, as libmnl does).
    pub fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Attrs)) -> &mut Self {
        let mut inner = Attrs::new();
        f(&mut inner);
        self.put(ty | NLA_F_NESTED, &inner.buf)
    }
}

/// One message of a batch, as the kernel will see it.
#[derive(Debug, Clone)]
pub struct Message {
    pub ty: MsgType,
    pub flags: u16,
    pub family: u8,
    pub attrs: Attrs,
    /// What this message does, for error messages ("add rule 3 of chain ...").
    pub what: String,
}

impl Message {
    pub fn new(ty: MsgType, family: u8, what: impl Into<String>) -> Message {
        let flags = match ty {
            MsgType::NewTable | MsgType::NewChain | MsgType::NewSet | MsgType::NewSetElem => {
                NLM_F_CREATE
            }
            MsgType::NewRule => NLM_F_CREATE | NLM_F_APPEND,
            _ => 0,
        };
        Message {
            ty,
            flags,
            family,
            attrs: Attrs::new(),
            what: what.into(),
        }
    }
}

/// Append one netlink message: header, nfgenmsg, attributes.
pub(crate) fn push_message(
    out: &mut Vec<u8>,
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = NLMSG_HDRLEN + 4 + attrs.len();
    // Batches are bounded by the socket buffer long before u32 overflows.
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
                                                // struct nfgenmsg { u8 family; u8 version (NFNETLINK_V0); be16 res_id; }
    out.push(family);
    out.push(0);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(attrs);
    out.resize(align4(out.len()), 0);
}

/// A batch ready to send: its bytes and the sequence number of each acked message.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub begin_seq: u32,
    /// (sequence number, description) of each message that asks for an ACK.
    pub acks: Vec<(u32, String)>,
}

/// Encode `messages` between BATCH_BEGIN and BATCH_END, numbering from `seq`.
/// Every message in between asks for an ACK; the batch delimiters do not.
pub fn encode_batch(messages: &[Message], seq: u32) -> Encoded {
    let mut bytes = Vec::new();
    let mut acks = Vec::with_capacity(messages.len());
    push_message(
        &mut bytes,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    let mut s = seq;
    for m in messages {
        s = s.wrapping_add(1);
        push_message(
            &mut bytes,
            (NFNL_SUBSYS_NFTABLES << 8) | m.ty as u16,
            NLM_F_REQUEST | NLM_F_ACK | m.flags,
            s,
            m.family,
            0,
            m.attrs.bytes(),
        );
        acks.push((s, m.what.clone()));
    }
    push_message(
        &mut bytes,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        s.wrapping_add(1),
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    Encoded {
        bytes,
        begin_seq: seq,
        acks,
    }
}

/// A reply from the kernel: an `NLMSG_ERROR` (errno 0 is an ACK) for `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub seq: u32,
    /// 0 for success, otherwise a positive errno.
    pub errno: i32,
}

/// Parse the netlink messages in one datagram; anything but errors/ACKs is skipped.
/// `None` if the datagram is malformed.
pub fn parse_acks(mut data: &[u8]) -> Option<Vec<Ack>> {
    let mut out = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(data[4..6].try_into().ok()?);
        let seq = u32::from_ne_bytes(data[8..12].try_into().ok()?);
        if len < NLMSG_HDRLEN || len > data.len() {
            return None;
        }
        if ty == NLMSG_ERROR {
            let code = i32::from_ne_bytes(data.get(16..20)?.try_into().ok()?);
            out.push(Ack {
                seq,
                errno: code.checked_neg().unwrap_or(i32::MAX),
            });
        }
        let next = align4(len).min(data.len());
        data = &data[next..];
    }
    Some(out)
}

/// One netlink message of a datagram: its type, sequence number, and what
/// follows its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<'a> {
    pub ty: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// Split one datagram into its netlink messages; `None` if malformed.
pub fn parse_messages(mut data: &[u8]) -> Option<Vec<Received<'_>>> {
    let mut out = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(data[4..6].try_into().ok()?);
        let seq = u32::from_ne_bytes(data[8..12].try_into().ok()?);
        if len < NLMSG_HDRLEN || len > data.len() {
            return None;
        }
        out.push(Received {
            ty,
            seq,
            payload: &data[NLMSG_HDRLEN..len],
        });
        let next = align4(len).min(data.len());
        data = &data[next..];
    }
    Some(out)
}

/// The attributes in `data` as (type without flags, payload); `None` if malformed.
pub fn parse_attrs(mut data: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u16::from_ne_bytes(data[0..2].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(data[2..4].try_into().ok()?) & 0x3fff;
        if len < 4 || len > data.len() {
            return None;
        }
        out.push((ty, &data[4..len]));
        let next = align4(len).min(data.len());
        data = &data[next..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_and_nested() {
        let mut a = Attrs::new();
        a.put_str(1, "abc").nest(2, |n| {
            n.put_be32(1, 0x0102_0304);
        });
        assert_eq!(
            a.bytes(),
            &[
                8, 0, 1, 0, b'a', b'b', b'c', 0, // "abc\0"
                12, 0, 2, 0x80, // nested, NLA_F_NESTED
                8, 0, 1, 0, 1, 2, 3, 4,
            ][..]
        );
        let mut b = Attrs::new();
        b.put(3, &[9]);
        assert_eq!(b.bytes(), &[5, 0, 3, 0, 9, 0, 0, 0][..]);
    }

    #[test]
    fn batch_is_framed_by_begin_and_end() {
        let mut m = Message::new(MsgType::NewTable, NFPROTO_BRIDGE, "create table");
        m.attrs.put_str(1, "t");
        let e = encode_batch(&[m], 100);
        assert_eq!(e.begin_seq, 100);
        assert_eq!(e.acks, vec![(101, "create table".to_string())]);
        let b = &e.bytes;
        // BATCH_BEGIN: len 20, type 0x10, flags REQUEST, seq 100, res_id be16 10.
        assert_eq!(
            &b[0..20],
            &[20, 0, 0, 0, 0x10, 0, 1, 0, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10]
        );
        // NEWTABLE: len 28, type 0x0a00, flags REQUEST|ACK|CREATE, seq 101, family bridge.
        assert_eq!(
            &b[20..48],
            &[
                28, 0, 0, 0, 0, 0x0a, 0x05, 0x04, 101, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 6, 0, 1, 0,
                b't', 0, 0, 0
            ]
        );
        // BATCH_END.
        assert_eq!(
            &b[48..68],
            &[20, 0, 0, 0, 0x11, 0, 1, 0, 102, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10]
        );
        assert_eq!(b.len(), 68);
    }

    #[test]
    fn acks_and_errors_are_parsed() {
        let mut d = Vec::new();
        for (seq, code) in [(5u32, 0i32), (6, -2)] {
            d.extend_from_slice(&36u32.to_ne_bytes());
            d.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            d.extend_from_slice(&0u16.to_ne_bytes());
            d.extend_from_slice(&seq.to_ne_bytes());
            d.extend_from_slice(&0u32.to_ne_bytes());
            d.extend_from_slice(&code.to_ne_bytes());
            d.extend_from_slice(&[0; 16]);
        }
        assert_eq!(
            parse_acks(&d),
            Some(vec![Ack { seq: 5, errno: 0 }, Ack { seq: 6, errno: 2 }])
        );
        // A message cut short is malformed.
        assert_eq!(parse_acks(&d[..20]), None);
        // A length running past the datagram is malformed.
        let mut bad = d.clone();
        bad[0] = 200;
        assert_eq!(parse_acks(&bad), None);
    }
}
