//! Network byte order, the foundations chapter's first claim: ip(7) says
//! the address and the port in a `sockaddr_in` are always in network byte
//! order (big-endian: most significant byte first), whatever the CPU's own
//! order, and that is the order in which they cross the wire.

mod common;

use std::net::{SocketAddrV4, UdpSocket};

use common::*;
use nix::sys::socket::SockaddrIn;

/// Port 55566 is 0xD90E: in a `sockaddr_in` its bytes are D9 0E, and the
/// address 192.168.126.129 is C0 A8 7E 81, in the order it is written. On
/// a little-endian CPU (x86, most ARM) the port as a plain `u16` in memory
/// would be 0E D9: hence `htons`.
#[test]
fn sockaddr_in_holds_port_and_address_in_network_byte_order() {
    let addr = SockaddrIn::from(SocketAddrV4::new(VM1, PORT_A));
    let raw: &nix::libc::sockaddr_in = addr.as_ref();
    assert_eq!(raw.sin_port.to_ne_bytes(), [0xD9, 0x0E]);
    assert_eq!(raw.sin_port, PORT_A.to_be(), "what htons(55566) returns");
    assert_eq!(raw.sin_addr.s_addr.to_ne_bytes(), [192, 168, 126, 129]);
}

/// The same bytes in a datagram leaving vm1: the captured packet holds
/// vm2's address, then the ports 55566 and 55577 as D9 0E D9 19.
#[test]
fn port_and_address_cross_the_wire_in_network_byte_order() {
    let Some(lab) = two_vms("port_and_address_cross_the_wire_in_network_byte_order") else {
        return;
    };
    let capture = lab.capture("vm1", "eth0", &[], "udp").unwrap();
    let socket = lab.in_host("vm1", || UdpSocket::bind(vm1(PORT_A)).unwrap());
    socket.send_to(b"hi", vm2(PORT_B)).unwrap();
    capture.wait_for("UDP, length 2").unwrap();
    let packets = capture.stop().unwrap().packets;
    let packet = packets
        .iter()
        .find(|packet| packet.udp_payload() == b"hi")
        .unwrap();
    // Bytes 12 to 15 of the IPv4 header (20 bytes here) hold the source
    // address, 16 to 19 the destination; the UDP header follows with the
    // source port, then the destination port.
    assert_eq!(
        packet.ip[12..24],
        [
            192, 168, 126, 129, 192, 168, 126, 128, 0xD9, 0x0E, 0xD9, 0x19
        ],
        "addresses and ports big-endian on the wire: {packet:?}"
    );
}
