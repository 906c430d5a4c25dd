//! The lab's topology, declared in one place: hosts (network namespaces),
//! links (veth pairs with an address at each end and an MTU), routes,
//! sysctls and nftables rules.
//!
//! A [`Topology`] is plain data; [`crate::Lab::up`] turns it into namespaces.
//! The first post's scene is [`Topology::two_vms`]; later lessons (lesson 6's
//! routers and NATs) declare theirs the same way, with more hosts, more
//! links, `ip route` lines and nftables rulesets.

use std::net::Ipv4Addr;

/// The first post's VM1: where peer A and the echo server run.
pub const VM1: Ipv4Addr = Ipv4Addr::new(192, 168, 126, 129);
/// The first post's VM2: where peer B and the echo clients run.
pub const VM2: Ipv4Addr = Ipv4Addr::new(192, 168, 126, 128);
/// The post's chat ports: peer A (on VM1) receives on 55566, peer B on 55577.
pub const PORT_A: u16 = 55566;
pub const PORT_B: u16 = 55577;
/// The second post's echo port.
pub const ECHO_PORT: u16 = 8890;

/// The ephemeral ports of every host: the kernel picks a client's port
/// from these. The lab's fixed ports (8890, 55566, 55577…) lie outside, so a
/// capture can tell the two apart and renumber the random ones.
pub const EPHEMERAL_PORTS: std::ops::RangeInclusive<u16> = 40000..=49999;

/// Sysctls every host gets, so that what the lab shows is the same on every
/// machine and every run: no TCP timestamps (their values would change each
/// capture), fixed TCP buffer sizes (they decide the window and its scale),
/// ephemeral ports in [`EPHEMERAL_PORTS`], and no IPv6 (its neighbour
/// discovery would add packets the book does not talk about).
pub const DEFAULT_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_local_port_range", "40000 49999"),
    ("net.ipv4.tcp_timestamps", "0"),
    ("net.ipv4.tcp_rmem", "4096 131072 6291456"),
    ("net.ipv4.tcp_wmem", "4096 16384 4194304"),
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
];

/// A host of the lab: one network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The name the lab and the book use (`vm1`); the namespace's name adds
    /// the lab's suffix.
    pub name: String,
    /// `(key, value)` pairs written with `sysctl -w` inside the host, after
    /// [`DEFAULT_SYSCTLS`] (so they can override them); e.g.
    /// `("net.ipv4.ip_forward", "1")` for a router.
    pub sysctls: Vec<(String, String)>,
    /// Arguments of `ip route add`, e.g. `default via 10.0.1.1`, applied once
    /// every link is up.
    pub routes: Vec<String>,
    /// nftables rulesets (`nft -f` syntax) loaded inside the host, once its
    /// routes are in place: a NAT, a firewall.
    pub nft: Vec<String>,
    /// Commands (program and arguments) run inside the host once every link
    /// is up, before its routes: e.g. the `ip link` calls that make a
    /// bridge of some of its interfaces (see [`Topology::bridge`]).
    pub commands: Vec<Vec<String>>,
}

/// One end of a link: an interface in a host, with its IPv4 address
/// (0.0.0.0: none, for an interface that joins a bridge).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    pub host: String,
    /// The interface's name inside the host (at most 15 bytes), e.g. `eth0`.
    pub interface: String,
    pub address: Ipv4Addr,
    /// The network prefix length: 24 for a /24.
    pub prefix: u8,
}

/// A link: a veth pair, one end in each host, both with the same MTU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub a: End,
    pub b: End,
    pub mtu: u32,
}

/// The whole lab: its hosts and the links between them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    pub hosts: Vec<Host>,
    pub links: Vec<Link>,
}

impl Topology {
    /// An empty topology; add hosts and links with the builder methods.
    pub fn new() -> Topology {
        Topology::default()
    }

    /// The first post's two machines: `vm1` (192.168.126.129) and `vm2`
    /// (192.168.126.128), their `eth0`s on one /24 link with MTU 1500, the
    /// MTU of an Ethernet.
    pub fn two_vms() -> Topology {
        Topology::new().host("vm1").host("vm2").link(
            ("vm1", "eth0", VM1, 24),
            ("vm2", "eth0", VM2, 24),
            1500,
        )
    }

    /// Adds a host named `name`.
    pub fn host(mut self, name: &str) -> Topology {
        assert!(
            self.find(name).is_none(),
            "host {name} is declared twice in the topology"
        );
        self.hosts.push(Host {
            name: name.to_owned(),
            sysctls: Vec::new(),
            routes: Vec::new(),
            nft: Vec::new(),
            commands: Vec::new(),
        });
        self
    }

    /// Adds a link between two hosts already declared: each end is
    /// `(host, interface, address, prefix)`.
    pub fn link(
        mut self,
        a: (&str, &str, Ipv4Addr, u8),
        b: (&str, &str, Ipv4Addr, u8),
        mtu: u32,
    ) -> Topology {
        let end = |(host, interface, address, prefix): (&str, &str, Ipv4Addr, u8)| {
            assert!(
                self.find(host).is_some(),
                "link to host {host}, which the topology does not declare"
            );
            assert!(
                interface.len() <= 15,
                "interface name {interface} is longer than Linux allows (15 bytes)"
            );
            End {
                host: host.to_owned(),
                interface: interface.to_owned(),
                address,
                prefix,
            }
        };
        let link = Link {
            a: end(a),
            b: end(b),
            mtu,
        };
        self.links.push(link);
        self
    }

    /// Sets sysctl `key` to `value` in `host`.
    pub fn sysctl(mut self, host: &str, key: &str, value: &str) -> Topology {
        self.host_mut(host)
            .sysctls
            .push((key.to_owned(), value.to_owned()));
        self
    }

    /// Adds a route in `host` (`ip route add ROUTE`).
    pub fn route(mut self, host: &str, route: &str) -> Topology {
        self.host_mut(host).routes.push(route.to_owned());
        self
    }

    /// Loads an nftables `ruleset` in `host`.
    pub fn nft(mut self, host: &str, ruleset: &str) -> Topology {
        self.host_mut(host).nft.push(ruleset.to_owned());
        self
    }

    /// Runs `args` inside `host` once every link is up, before its routes.
    pub fn command(mut self, host: &str, args: &[&str]) -> Topology {
        let args = args.iter().map(|arg| (*arg).to_owned()).collect();
        self.host_mut(host).commands.push(args);
        self
    }

    /// Makes a bridge `name` in `host` of its interfaces `ports` (link ends
    /// declared with address 0.0.0.0), with `address` on the bridge if any:
    /// a switch, so that more than two hosts share one network.
    pub fn bridge(
        self,
        host: &str,
        name: &str,
        address: Option<(Ipv4Addr, u8)>,
        ports: &[&str],
    ) -> Topology {
        let mut topology =
            self.command(host, &["ip", "link", "add", "name", name, "type", "bridge"]);
        for port in ports {
            topology = topology.command(host, &["ip", "link", "set", port, "master", name]);
        }
        if let Some((address, prefix)) = address {
            let address = format!("{address}/{prefix}");
            topology = topology.command(host, &["ip", "addr", "add", &address, "dev", name]);
        }
        topology.command(host, &["ip", "link", "set", name, "up"])
    }

    /// The host named `name`.
    pub fn find(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|host| host.name == name)
    }

    /// The address of `host` on its first link.
    pub fn address(&self, host: &str) -> Option<Ipv4Addr> {
        self.links.iter().find_map(|link| {
            [&link.a, &link.b]
                .into_iter()
                .find(|end| end.host == host)
                .map(|end| end.address)
        })
    }

    fn host_mut(&mut self, name: &str) -> &mut Host {
        self.hosts
            .iter_mut()
            .find(|host| host.name == name)
            .unwrap_or_else(|| panic!("no host {name} in the topology"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_vms_is_the_posts_scene() {
        let topology = Topology::two_vms();
        assert_eq!(topology.address("vm1"), Some(VM1));
        assert_eq!(topology.address("vm2"), Some(VM2));
        assert_eq!(topology.links.len(), 1);
        assert_eq!(topology.links[0].mtu, 1500);
    }
}
