//! Lesson 2's peer filter, and what the kernel can do instead, checked on
//! this kernel: `connect` on a UDP socket sends nothing, but from then on
//! the kernel delivers to it only datagrams from the connected address
//! (udp(7)), and drops the others. (Neither filter proves who sent a
//! datagram: UDP source addresses can be forged.)

use std::net::UdpSocket;

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
