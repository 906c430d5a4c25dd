//! Lesson 2's peer filter, and what the kernel can do instead, checked on
//! this kernel: `connect` on a UDP socket sends nothing, but from then on
//! the kernel delivers to it only datagrams from the connected address
//! (udp(7)), and drops the others. (Neither filter proves who sent a
//! datagram: UDP source addresses can be forged.)

use std::net::{SocketAddr, UdpSocket};

use nix::sys::socket::{
    AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrStorage, sendto, socket,
};
use testkit::{DEADLINE, LOCALHOST};

#[test]
fn a_connected_udp_socket_receives_only_from_its_peer() {
    let me = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let peer = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let stranger = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    me.connect(peer.local_addr().unwrap()).unwrap();
    me.set_read_timeout(Some(DEADLINE)).unwrap();
    let my_addr = me.local_addr().unwrap();

    // The stranger's datagram is sent first: if the kernel queued it, it
    // would be received first.
    stranger.send_to(b"from a stranger", my_addr).unwrap();
    peer.send_to(b"from the peer", my_addr).unwrap();
    let mut buffer = [0; 64];
    let (len, from) = me.recv_from(&mut buffer).unwrap();
    assert_eq!(&buffer[..len], b"from the peer");
    assert_eq!(from, peer.local_addr().unwrap());

    // Nothing else is queued: the stranger's datagram was dropped.
    me.set_nonblocking(true).unwrap();
    let next = me.recv_from(&mut buffer);
    assert!(
        next.as_ref()
            .is_err_and(|err| err.kind() == std::io::ErrorKind::WouldBlock),
        "the stranger's datagram reached a connected socket: {next:?}"
    );
}

/// Sends `payload` to `to` as a UDP datagram whose source port says `from`,
/// written by hand on a raw socket (root only; the source IP is the
/// loopback address the kernel picks). Returns why it cannot, if so.
fn send_forged(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let raw = socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Udp,
    )
    .map_err(|err| format!("cannot open a raw socket (needs root): {err}"))?;
    let length = u16::try_from(8 + payload.len()).expect("a small payload");
    let mut datagram = Vec::new();
    datagram.extend_from_slice(&from.port().to_be_bytes());
    datagram.extend_from_slice(&to.port().to_be_bytes());
    datagram.extend_from_slice(&length.to_be_bytes());
    datagram.extend_from_slice(&[0, 0]); // No checksum: allowed over IPv4.
    datagram.extend_from_slice(payload);
    let to_ip = SockaddrStorage::from(SocketAddr::new(to.ip(), 0));
    sendto(raw.as_raw_fd(), &datagram, &to_ip, MsgFlags::empty())
        .map_err(|err| format!("cannot send on a raw socket: {err}"))?;
    Ok(())
}

/// The kernel's filter (like lesson 2's) trusts the source address written
/// in the datagram, and anyone who can write raw packets writes what they
/// like: a datagram forged to come from the peer is delivered.
#[test]
fn a_forged_source_address_passes_the_connect_filter() {
    let me = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let peer = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let peer_addr = peer.local_addr().unwrap();
    me.connect(peer_addr).unwrap();
    me.set_read_timeout(Some(DEADLINE)).unwrap();
    if let Err(reason) = send_forged(peer_addr, me.local_addr().unwrap(), b"not really the peer") {
        println!("skipped: {reason}");
        return;
    }
    let mut buffer = [0; 64];
    let (len, from) = me.recv_from(&mut buffer).unwrap();
    assert_eq!(&buffer[..len], b"not really the peer");
    assert_eq!(
        from, peer_addr,
        "it claims to come from the peer, and is believed"
    );
}
