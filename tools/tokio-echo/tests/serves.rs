//! The tokio server echoes to several clients at once and keeps serving
//! the others when one leaves.

use testkit::tcp::{assert_echo, close, connect, random_bytes, start_server};

#[test]
fn echoes_to_several_clients_at_once() {
    let (_server, addr) = start_server("tokio-echo-server", "127.0.0.1:0".parse().unwrap(), &[]);
    let clients: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    for (seed, client) in clients.iter().enumerate() {
        assert_echo(client, &random_bytes(seed as u64, 100_000));
    }
    let mut clients = clients.into_iter();
    close(clients.next().expect("a client"));
    for client in clients {
        assert_echo(&client, b"still here\n");
    }
}
