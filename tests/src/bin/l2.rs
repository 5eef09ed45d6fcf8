//! `tupper-l2`: what code with CAP_NET_RAW inside a container can put on the
//! wire, for the hostile bridge tests. Run as root by the tests only.
//!
//! ```text
//! tupper-l2 send-arp PID ETHER_SRC SENDER_MAC SENDER_IP TARGET_IP OP COUNT
//!     enter the network namespace of PID, send COUNT broadcast ARP frames
//!     (OP: request|reply) from eth0; a MAC of "self" is eth0's own
//! tupper-l2 send-ra PID COUNT
//!     enter the network namespace of PID, send COUNT IPv6 Router
//!     Advertisements (prefix 2001:db8:1::/64, lifetime 1800 s) from eth0
//! tupper-l2 sniff-ra IFACE SECONDS
//!     count the Router Advertisements seen on IFACE (of this netns)
//! ```

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::exit;
use std::time::{Duration, Instant};

const ETH_P_ALL: u16 = 0x0003;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const BROADCAST: [u8; 6] = [0xff; 6];
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

fn die(msg: &str) -> ! {
    eprintln!("tupper-l2: {msg}");
    exit(2)
}

fn os(what: &str) -> ! {
    die(&format!("{what}: {}", std::io::Error::last_os_error()))
}

fn parse_mac(s: &str) -> [u8; 6] {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap_or_else(|_| die(&format!("bad MAC {s}"))))
        .collect();
    parts
        .try_into()
        .unwrap_or_else(|_| die(&format!("bad MAC {s}")))
}

fn enter_netns(pid: &str) {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .unwrap_or_else(|e| die(&format!("open the netns of {pid}: {e}")));
    // SAFETY: setns with a namespace fd we own.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        os("setns");
    }
}

fn packet_socket(proto: u16) -> OwnedFd {
    // SAFETY: plain socket(2), checked.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto.to_be() as i32) };
    if fd < 0 {
        os("socket(AF_PACKET)");
    }
    // SAFETY: a new descriptor we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: a zeroed ifreq is valid.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s as libc::c_char;
    }
    r
}

fn if_index(fd: &OwnedFd, name: &str) -> i32 {
    let mut r = ifreq(name);
    // SAFETY: SIOCGIFINDEX with a valid ifreq.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFINDEX, &mut r) } != 0 {
        os(&format!("SIOCGIFINDEX {name}"));
    }
    // SAFETY: the kernel filled the index member.
    unsafe { r.ifr_ifru.ifru_ifindex }
}

fn if_mac(fd: &OwnedFd, name: &str) -> [u8; 6] {
    let mut r = ifreq(name);
    // SAFETY: SIOCGIFHWADDR with a valid ifreq.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut r) } != 0 {
        os(&format!("SIOCGIFHWADDR {name}"));
    }
    // SAFETY: the kernel filled the hwaddr member.
    let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    mac
}

fn send(fd: &OwnedFd, ifindex: i32, dst: [u8; 6], frame: &[u8]) {
    // SAFETY: a zeroed sockaddr_ll is valid.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_ifindex = ifindex;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&dst);
    // SAFETY: buffer and address valid for the lengths given.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        os("sendto");
    }
}

fn ether(dst: [u8; 6], src: [u8; 6], ty: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ty.to_be_bytes());
    f
}

fn send_arp(args: &[String]) {
    let [pid, ether_src, sender_mac, sender_ip, target_ip, op, count] = args else {
        die("send-arp PID ETHER_SRC SENDER_MAC SENDER_IP TARGET_IP OP COUNT")
    };
    enter_netns(pid);
    let fd = packet_socket(ETH_P_ARP);
    let index = if_index(&fd, "eth0");
    let own = if_mac(&fd, "eth0");
    let mac = |s: &str| if s == "self" { own } else { parse_mac(s) };
    let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap_or_else(|_| die(&format!("bad IPv4 {s}"))) };
    let op: u16 = match op.as_str() {
        "request" => 1,
        "reply" => 2,
        _ => die("OP is request or reply"),
    };
    let mut f = ether(BROADCAST, mac(ether_src), ETH_P_ARP);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4]);
    f.extend_from_slice(&op.to_be_bytes());
    f.extend_from_slice(&mac(sender_mac));
    f.extend_from_slice(&ip(sender_ip).octets());
    // Gratuitous: target MAC broadcast for a reply, zero for a request.
    f.extend_from_slice(if op == 2 { &BROADCAST } else { &[0; 6] });
    f.extend_from_slice(&ip(target_ip).octets());
    f.resize(60, 0);
    let count: u32 = count.parse().unwrap_or_else(|_| die("bad COUNT"));
    for _ in 0..count {
        send(&fd, index, BROADCAST, &f);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn router_advertisement(src_mac: [u8; 6]) -> Vec<u8> {
    // Link-local source from the MAC (EUI-64), destination ff02::1.
    let mut src = [0u8; 16];
    src[0] = 0xfe;
    src[1] = 0x80;
    src[8..11].copy_from_slice(&[src_mac[0] ^ 0x02, src_mac[1], src_mac[2]]);
    src[11..13].copy_from_slice(&[0xff, 0xfe]);
    src[13..16].copy_from_slice(&src_mac[3..6]);
    let mut dst = [0u8; 16];
    dst[0] = 0xff;
    dst[1] = 0x02;
    dst[15] = 1;
    let mut icmp = vec![134, 0, 0, 0, 64, 0];
    icmp.extend_from_slice(&1800u16.to_be_bytes()); // router lifetime
    icmp.extend_from_slice(&[0; 8]); // reachable, retrans
    icmp.extend_from_slice(&[1, 1]); // source link-layer address option
    icmp.extend_from_slice(&src_mac);
    icmp.extend_from_slice(&[3, 4, 64, 0xc0]); // prefix information: /64, on-link + autonomous
    icmp.extend_from_slice(&86400u32.to_be_bytes());
    icmp.extend_from_slice(&14400u32.to_be_bytes());
    icmp.extend_from_slice(&[0; 4]);
    icmp.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src);
    pseudo.extend_from_slice(&dst);
    pseudo.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&icmp);
    let sum = checksum(&pseudo);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut f = ether(ALL_NODES_MAC, src_mac, ETH_P_IPV6);
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&icmp);
    f
}

fn send_ra(args: &[String]) {
    let [pid, count] = args else {
        die("send-ra PID COUNT")
    };
    enter_netns(pid);
    let fd = packet_socket(ETH_P_IPV6);
    let index = if_index(&fd, "eth0");
    let frame = router_advertisement(if_mac(&fd, "eth0"));
    let count: u32 = count.parse().unwrap_or_else(|_| die("bad COUNT"));
    for _ in 0..count {
        send(&fd, index, ALL_NODES_MAC, &frame);
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn is_ra(f: &[u8]) -> bool {
    f.len() > 54 && f[12..14] == ETH_P_IPV6.to_be_bytes() && f[20] == 58 && f[54] == 134
}

fn sniff_ra(args: &[String]) {
    let [iface, seconds] = args else {
        die("sniff-ra IFACE SECONDS")
    };
    let fd = packet_socket(ETH_P_ALL);
    let index = if_index(&fd, iface);
    // SAFETY: a zeroed sockaddr_ll is valid.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_ALL.to_be();
    sa.sll_ifindex = index;
    // SAFETY: valid address of the size given.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    } != 0
    {
        os("bind");
    }
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: a valid timeval.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    println!("listening");
    let secs: u64 = seconds.parse().unwrap_or_else(|_| die("bad SECONDS"));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut seen = 0;
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        // SAFETY: buffer valid for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 && is_ra(&buf[..n as usize]) {
            seen += 1;
        }
    }
    println!("router advertisements: {seen}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("send-arp") => send_arp(&args[1..]),
        Some("send-ra") => send_ra(&args[1..]),
        Some("sniff-ra") => sniff_ra(&args[1..]),
        _ => die("usage: send-arp ... | send-ra ... | sniff-ra ..."),
    }
}
