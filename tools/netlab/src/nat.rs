//! Lesson 6's scene: two homes behind NAT routers, and the rendezvous
//! server on an "internet" between them.
//!
//! ```text
//!                      internet 203.0.113.0/24 (a bridge in host `internet`)
//!        ┌───────────────────────┼────────────────────────┐
//!  router1 wan 203.0.113.1   rendezvous 203.0.113.10   router2 wan 203.0.113.2
//!  (NAT [+ firewall])                                   (NAT [+ firewall])
//!  lan 192.168.1.1/24                                   lan 192.168.1.1/24
//!    ├── alice 192.168.1.2                                └── bob 192.168.1.2
//!    └── carol 192.168.1.3
//! ```
//!
//! Both homes use the same private range, as real homes do: alice and bob
//! even have the same address. Each router masquerades what leaves by its
//! `wan` (nftables `masquerade`, Linux conntrack underneath). What it does
//! with a datagram that arrives on `wan` unsolicited (one that belongs to
//! no flow conntrack knows) is its [`Unsolicited`] behaviour: as home
//! routers do, drop it (a named counter counts those drops), or, with no
//! firewall, take it for itself.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};

use crate::{Lab, Topology};

/// The rendezvous server's host address on the internet.
pub const RENDEZVOUS_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// The rendezvous server's port (lesson 6's default).
pub const RENDEZVOUS_PORT: u16 = 55500;
/// The routers' public (wan) addresses.
pub const ROUTER1_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub const ROUTER2_WAN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// Each router's address on its home network.
pub const LAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
/// alice behind router1, bob behind router2: the same private address.
pub const ALICE: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
pub const BOB: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
/// carol, alice's neighbour behind router1.
pub const CAROL: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 3);
/// The port every peer binds in the scene.
pub const PEER_PORT: u16 = 55501;

/// How a router's NAT picks the public port of a new flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapping {
    /// nftables `masquerade`: a socket keeps one public port for every
    /// destination (its private port when free). Hole punching works.
    EndpointIndependent,
    /// `masquerade random`: each new flow, so each new destination, gets a
    /// random public port. What the rendezvous saw is useless to the peer.
    Symmetric,
}

/// What a router does with a datagram that arrives on `wan` unsolicited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsolicited {
    /// Drop it, and count it, in the filter hooks. Conntrack confirms a new
    /// entry only when its first packet has passed every hook, so a dropped
    /// datagram leaves no entry behind.
    Drop,
    /// No firewall, masquerade only: the datagram is addressed to the
    /// router, so it is delivered to the router itself, where nothing
    /// listens; the router answers with ICMP "port unreachable", and
    /// conntrack keeps an entry for the datagram's flow (UNREPLIED).
    Deliver,
}

/// A home router: how it maps, what it does with unsolicited datagrams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Router {
    pub mapping: Mapping,
    pub unsolicited: Unsolicited,
}

impl Router {
    /// A home router as most are: `mapping`, and unsolicited datagrams
    /// dropped.
    pub fn home(mapping: Mapping) -> Router {
        Router {
            mapping,
            unsolicited: Unsolicited::Drop,
        }
    }

    /// A router that only masquerades (endpoint-independent), with no
    /// firewall.
    pub fn masquerade_only() -> Router {
        Router {
            mapping: Mapping::EndpointIndependent,
            unsolicited: Unsolicited::Deliver,
        }
    }
}

/// The nftables ruleset of `router`: masquerade on `wan` with its mapping,
/// and, with [`Unsolicited::Drop`], drop (counted) what arrives on `wan`
/// unsolicited.
pub fn router_ruleset(router: Router) -> String {
    let random = match router.mapping {
        Mapping::EndpointIndependent => "",
        Mapping::Symmetric => " random",
    };
    let nat = format!(
        "table ip nat {{
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname \"wan\" masquerade{random}
\t}}
}}
"
    );
    match router.unsolicited {
        Unsolicited::Drop => nat + FIREWALL,
        Unsolicited::Deliver => nat,
    }
}

/// The home router's firewall: what arrives on `wan` and is new to
/// conntrack is dropped and counted.
const FIREWALL: &str = "table inet firewall {
\tcounter unsolicited { }
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname \"wan\" ct state new counter name \"unsolicited\" drop
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"wan\" ct state new counter name \"unsolicited\" drop
\t}
}
";

impl Topology {
    /// Lesson 6's scene (see the module's drawing), with each router's
    /// NAT mapping as given and unsolicited datagrams dropped.
    pub fn nat_scene(router1: Mapping, router2: Mapping) -> Topology {
        Topology::nat_scene_with(Router::home(router1), Router::home(router2))
    }

    /// Lesson 6's scene with each router as given.
    pub fn nat_scene_with(router1: Router, router2: Router) -> Topology {
        let none = Ipv4Addr::UNSPECIFIED;
        let mut topology = Topology::new();
        for host in [
            "internet",
            "rendezvous",
            "router1",
            "router2",
            "alice",
            "carol",
            "bob",
        ] {
            topology = topology.host(host);
        }
        topology
            // The internet: one switch joining the rendezvous and the
            // routers' wan interfaces.
            .link(
                ("internet", "rendezvous", none, 0),
                ("rendezvous", "eth0", RENDEZVOUS_IP, 24),
                1500,
            )
            .link(
                ("internet", "router1", none, 0),
                ("router1", "wan", ROUTER1_WAN, 24),
                1500,
            )
            .link(
                ("internet", "router2", none, 0),
                ("router2", "wan", ROUTER2_WAN, 24),
                1500,
            )
            .bridge(
                "internet",
                "net",
                None,
                &["rendezvous", "router1", "router2"],
            )
            // Home 1: alice and carol on router1's lan switch.
            .link(
                ("router1", "alice", none, 0),
                ("alice", "eth0", ALICE, 24),
                1500,
            )
            .link(
                ("router1", "carol", none, 0),
                ("carol", "eth0", CAROL, 24),
                1500,
            )
            .bridge(
                "router1",
                "lan",
                Some((LAN_GATEWAY, 24)),
                &["alice", "carol"],
            )
            // Home 2: bob alone, with alice's address.
            .link(("router2", "bob", none, 0), ("bob", "eth0", BOB, 24), 1500)
            .bridge("router2", "lan", Some((LAN_GATEWAY, 24)), &["bob"])
            .route("alice", &format!("default via {LAN_GATEWAY}"))
            .route("carol", &format!("default via {LAN_GATEWAY}"))
            .route("bob", &format!("default via {LAN_GATEWAY}"))
            .sysctl("router1", "net.ipv4.ip_forward", "1")
            .sysctl("router2", "net.ipv4.ip_forward", "1")
            .nft("router1", &router_ruleset(router1))
            .nft("router2", &router_ruleset(router2))
    }
}

/// How many unsolicited packets `router`'s firewall has dropped so far.
pub fn unsolicited_drops(lab: &Lab, router: &str) -> Result<u64> {
    let listing = lab.run(
        router,
        &["nft", "list", "counter", "inet", "firewall", "unsolicited"],
    )?;
    listing
        .split_whitespace()
        .skip_while(|word| *word != "packets")
        .nth(1)
        .and_then(|count| count.parse().ok())
        .with_context(|| format!("no packet count in {router}'s counter: {listing}"))
}

/// `router`'s conntrack entries for UDP, from its namespace's
/// /proc/net/nf_conntrack, one line each without what changes from run to
/// run (the seconds left, `mark`, `zone`, `use`): `udp src=… dst=… sport=…
/// dport=… [UNREPLIED] src=… …`, the original tuple, then the reply
/// tuple.
pub fn conntrack_udp(lab: &Lab, router: &str) -> Result<Vec<String>> {
    let table = lab.run(router, &["cat", "/proc/net/nf_conntrack"])?;
    Ok(table
        .lines()
        .filter_map(|line| {
            // ipv4 2 udp 17 SECONDS src=… : the family, the protocol (by
            // name and number), then the seconds left.
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.get(2) != Some(&"udp") {
                return None;
            }
            let kept: Vec<&str> = words[5..]
                .iter()
                .copied()
                .filter(|word| {
                    !["mark=", "zone=", "use=", "secctx="]
                        .iter()
                        .any(|k| word.starts_with(k))
                })
                .collect();
            Some(format!("udp {}", kept.join(" ")))
        })
        .collect())
}

/// Sets `router`'s conntrack UDP timeouts (seconds): for a flow seen one
/// way (`nf_conntrack_udp_timeout`) and both ways (`…_udp_timeout_stream`).
/// They belong to the router's namespace only.
pub fn set_udp_timeouts(lab: &Lab, router: &str, seconds: u32) -> Result<()> {
    let seconds = seconds.to_string();
    lab.sysctl(router, "net.netfilter.nf_conntrack_udp_timeout", &seconds)?;
    lab.sysctl(
        router,
        "net.netfilter.nf_conntrack_udp_timeout_stream",
        &seconds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scene_has_two_homes_with_the_same_private_range() {
        let topology = Topology::nat_scene(Mapping::EndpointIndependent, Mapping::Symmetric);
        assert_eq!(topology.address("rendezvous"), Some(RENDEZVOUS_IP));
        assert_eq!(topology.address("alice"), topology.address("bob"));
        let nft = |host: &str| topology.find(host).unwrap().nft.join("");
        assert!(nft("router1").contains("masquerade\n"));
        assert!(nft("router2").contains("masquerade random\n"));
        for router in ["router1", "router2"] {
            assert!(nft(router).contains("ct state new counter name \"unsolicited\" drop"));
        }
        let bare = Topology::nat_scene_with(Router::masquerade_only(), Router::masquerade_only());
        let nft = bare.find("router1").unwrap().nft.join("");
        assert!(
            nft.contains("masquerade\n") && !nft.contains("drop"),
            "{nft}"
        );
    }
}
