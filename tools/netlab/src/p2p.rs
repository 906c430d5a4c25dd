//! Lesson 7's scene: two homes behind any kind of NAT, in RFC 4787's
//! terms, with a routed internet between them.
//!
//! ```text
//!                 rendezvous 192.0.2.10 (+ 192.0.2.11)
//!                          │ srv 192.0.2.1/24
//!                      internet (a router: one hop)
//!         site1 198.51.100.1/25 ─┘   └─ site2 203.0.113.1/25
//!                │                              │
//!   [cgnat1 wan 198.51.100.2,            [cgnat2 wan 203.0.113.2,
//!    lan 100.64.0.1/10]                   lan 100.64.0.1/10]
//!   router1 wan 198.51.100.2             router2 wan 203.0.113.2
//!     (or 100.64.0.2 behind cgnat1)        (or 100.64.0.2 behind cgnat2)
//!   lan 192.168.1.1/24                   lan 192.168.1.1/24
//!     ├── alice 192.168.1.2                └── bob 192.168.1.2
//!     └── carol 192.168.1.3
//! ```
//!
//! A site's NAT is a [`Nat`], named for the command line (`eim-apdf`,
//! `apdm-apdf+ports=1024`, `cgnat`…; see [`Nat::from_str`]). With `none`
//! the router only routes, and its home uses public addresses instead
//! (198.51.100.128/25, 203.0.113.128/25). The internet is a router of its
//! own, so a datagram from one home to the other crosses three routers: a
//! probe sent with TTL 2 leaves its own NAT and expires at `internet`
//! (TTL 3 behind a carrier-grade NAT).
//!
//! Every NAT kind is nftables only. Conntrack alone gives the
//! address-and-port-dependent cases; the others keep their state in
//! dynamic maps and sets, as iroh's lab (patchbay) does: `out` (private
//! endpoint → public port: endpoint-independent mapping), `in` (public
//! port → private endpoint: inbound filtering and hairpinning) and `seen`
//! (public port . remote address: address-dependent filtering). A chain
//! after the NAT hook records each datagram that leaves, once its source
//! is translated: a flow's first datagram in `out_new` and `in_new` for 2 s
//! (conntrack may yet drop it), a confirmed flow's in `out` and `in`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use anyhow::{Result, bail};

use crate::Topology;
use crate::nat::{Mapping, Router, router_ruleset};

/// The rendezvous (and relay) server's address, and a second address of
/// the same host (a second destination for the routers' tests).
pub const RENDEZVOUS_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const SECOND_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
/// The rendezvous server's port, and the port every peer binds.
pub const RENDEZVOUS_PORT: u16 = 55500;
pub const PEER_PORT: u16 = 55501;
/// The internet router's address toward each site: where a probe with
/// too small a TTL expires.
pub const INTERNET_SITE1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const INTERNET_SITE2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// Each site's public address (its router's or its carrier's wan).
pub const SITE1_PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const SITE2_PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// Behind a carrier-grade NAT: the carrier's inside address and the home
/// router's wan, in the shared address space 100.64.0.0/10 (RFC 6598).
pub const CGNAT_INSIDE: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
pub const HOME_BEHIND_CGNAT: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 2);
/// The home networks behind a NAT: both use the same private range.
pub const LAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
pub const ALICE: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
pub const CAROL: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 3);
pub const BOB: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
/// A narrowed port range starts here (`+ports=N`: N ports from it).
pub const NARROW_BASE: u16 = 20000;

/// How a NAT filters datagrams that come to a mapped public port from the
/// internet (RFC 4787 section 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filtering {
    /// Anyone may send to a mapped port ("full cone").
    EndpointIndependent,
    /// Only addresses the private endpoint has sent to, from any port.
    AddressDependent,
    /// Only the exact endpoints it has sent to: conntrack's own rule.
    AddressAndPortDependent,
}

/// One NAT in RFC 4787's terms: mapping, filtering, hairpinning, port
/// preservation and port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Behaviour {
    pub mapping: Mapping,
    pub filtering: Filtering,
    /// A host inside may reach another one through its public endpoint.
    pub hairpin: bool,
    /// A new mapping keeps the private port when it is free and in range.
    pub preserve_ports: bool,
    /// Public ports are taken from `NARROW_BASE..NARROW_BASE + n` only.
    pub ports: Option<u16>,
}

/// What stands between a site's hosts and the internet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// A router that only routes: the home has public addresses.
    None,
    /// Lesson 6's masquerade-only router: no firewall, so unsolicited
    /// datagrams reach the router itself (see [`Router::masquerade_only`]).
    NoFirewall,
    /// A home router with a NAT of this behaviour.
    Home(Behaviour),
    /// Two layers: a home router (endpoint-independent mapping,
    /// address-and-port-dependent filtering) behind a carrier-grade NAT
    /// (the same, without port preservation, with hairpinning).
    Cgnat,
}

/// The kinds `lab nat` lists, by name.
pub const KINDS: &[&str] = &[
    "none",
    "no-firewall",
    "eim-eif",
    "eim-adf",
    "eim-apdf",
    "apdm-apdf",
    "cgnat",
];

impl Default for Behaviour {
    /// `eim-apdf`: what most home routers do.
    fn default() -> Behaviour {
        Behaviour::new(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        )
    }
}

impl Behaviour {
    fn new(mapping: Mapping, filtering: Filtering) -> Behaviour {
        Behaviour {
            mapping,
            filtering,
            hairpin: false,
            preserve_ports: mapping == Mapping::EndpointIndependent,
            ports: None,
        }
    }

    /// The carrier-grade NAT of [`Nat::Cgnat`].
    pub fn carrier() -> Behaviour {
        Behaviour {
            hairpin: true,
            preserve_ports: false,
            ..Behaviour::new(
                Mapping::EndpointIndependent,
                Filtering::AddressAndPortDependent,
            )
        }
    }

    /// The home router of [`Nat::Cgnat`].
    pub fn home_behind_carrier() -> Behaviour {
        Behaviour::new(
            Mapping::EndpointIndependent,
            Filtering::AddressAndPortDependent,
        )
    }

    /// The public ports a new mapping takes, as nftables writes a range.
    fn range(&self) -> String {
        match self.ports {
            Some(n) => format!(":{NARROW_BASE}-{}", NARROW_BASE + (n - 1)),
            None if self.preserve_ports => String::new(),
            None => ":1024-65535".to_owned(),
        }
    }
}

impl FromStr for Nat {
    type Err = anyhow::Error;

    /// `KIND[+hairpin][+no-pp][+ports=N]`: KIND is one of [`KINDS`];
    /// `+hairpin` turns hairpinning on, `+no-pp` turns port preservation
    /// off (endpoint-independent mapping only; the
    /// address-and-port-dependent one never preserves), `+ports=N`
    /// narrows the public ports to N (16 to 40000) from [`NARROW_BASE`].
    fn from_str(text: &str) -> Result<Nat> {
        let mut words = text.split('+');
        let kind = words.next().unwrap_or_default();
        let (mapping, filtering) = match kind {
            "none" | "no-firewall" | "cgnat" => {
                if let Some(extra) = words.next() {
                    bail!("NAT kind {kind} takes no options (got +{extra})");
                }
                return Ok(match kind {
                    "none" => Nat::None,
                    "no-firewall" => Nat::NoFirewall,
                    _ => Nat::Cgnat,
                });
            }
            "eim-eif" => (Mapping::EndpointIndependent, Filtering::EndpointIndependent),
            "eim-adf" => (Mapping::EndpointIndependent, Filtering::AddressDependent),
            "eim-apdf" => (
                Mapping::EndpointIndependent,
                Filtering::AddressAndPortDependent,
            ),
            "apdm-apdf" => (Mapping::Symmetric, Filtering::AddressAndPortDependent),
            _ => bail!(
                "unknown NAT kind {kind:?}: one of {} (with +hairpin, +no-pp, +ports=N)",
                KINDS.join(", ")
            ),
        };
        let mut behaviour = Behaviour::new(mapping, filtering);
        for word in words {
            match word {
                "hairpin" => behaviour.hairpin = true,
                "no-pp" if mapping == Mapping::EndpointIndependent => {
                    behaviour.preserve_ports = false;
                }
                "no-pp" => bail!("{kind} never preserves ports: +no-pp is for eim-* kinds"),
                _ => match word.strip_prefix("ports=").map(str::parse::<u16>) {
                    Some(Ok(n)) if (16..=40000).contains(&n) => behaviour.ports = Some(n),
                    Some(_) => bail!("+ports=N takes N from 16 to 40000 (got {word})"),
                    None => bail!(
                        "unknown option +{word} of NAT kind {kind}: +hairpin, +no-pp or +ports=N"
                    ),
                },
            }
        }
        Ok(Nat::Home(behaviour))
    }
}

impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = match self {
            Nat::None => return f.write_str("none"),
            Nat::NoFirewall => return f.write_str("no-firewall"),
            Nat::Cgnat => return f.write_str("cgnat"),
            Nat::Home(b) => b,
        };
        let mapping = match b.mapping {
            Mapping::EndpointIndependent => "eim",
            Mapping::Symmetric => "apdm",
        };
        let filtering = match b.filtering {
            Filtering::EndpointIndependent => "eif",
            Filtering::AddressDependent => "adf",
            Filtering::AddressAndPortDependent => "apdf",
        };
        write!(f, "{mapping}-{filtering}")?;
        if b.hairpin {
            f.write_str("+hairpin")?;
        }
        if b.mapping == Mapping::EndpointIndependent && !b.preserve_ports {
            f.write_str("+no-pp")?;
        }
        if let Some(n) = b.ports {
            write!(f, "+ports={n}")?;
        }
        Ok(())
    }
}

impl Nat {
    /// One line: the kind in RFC 4787's terms.
    pub fn summary(&self) -> String {
        match self {
            Nat::None => "no NAT, no firewall: public addresses".into(),
            Nat::NoFirewall => {
                "endpoint-independent mapping (masquerade), no firewall: unsolicited datagrams reach the router".into()
            }
            Nat::Cgnat => "a home router (eim-apdf) behind a carrier-grade NAT (eim-apdf+hairpin+no-pp) in 100.64.0.0/10".into(),
            Nat::Home(b) => {
                let mapping = match b.mapping {
                    Mapping::EndpointIndependent => "endpoint-independent mapping",
                    Mapping::Symmetric => "address-and-port-dependent mapping (\"symmetric\")",
                };
                let filtering = match b.filtering {
                    Filtering::EndpointIndependent => "endpoint-independent filtering (\"full cone\")",
                    Filtering::AddressDependent => "address-dependent filtering",
                    Filtering::AddressAndPortDependent => "address-and-port-dependent filtering",
                };
                format!("{mapping}, {filtering}")
            }
        }
    }

    /// What this NAT does, in RFC 4787's terms, one line each.
    pub fn describe(&self) -> Vec<String> {
        let b = match self {
            Nat::None => {
                return vec![
                    "no NAT: the router only routes; the home's hosts have public addresses".into(),
                    "no filtering: any host on the internet reaches them".into(),
                ];
            }
            Nat::NoFirewall => {
                return vec![
                    "mapping: endpoint-independent (masquerade; the private port when free)".into(),
                    "filtering: address-and-port-dependent (only flows conntrack knows are translated back)".into(),
                    "no firewall: an unsolicited datagram is delivered to the router itself, which answers \
                     ICMP port unreachable and keeps a conntrack entry for it: that entry can move its own \
                     host's next mapping to another port".into(),
                    "hairpinning: off".into(),
                ];
            }
            Nat::Cgnat => {
                let mut lines = vec![
                    "two layers: a home router behind a carrier-grade NAT (100.64.0.0/10)".into(),
                ];
                for (name, b) in [
                    ("home router", Behaviour::home_behind_carrier()),
                    ("carrier", Behaviour::carrier()),
                ] {
                    lines.extend(
                        Nat::Home(b)
                            .describe()
                            .into_iter()
                            .map(|l| format!("{name}: {l}")),
                    );
                }
                return lines;
            }
            Nat::Home(b) => b,
        };
        let mapping = match (b.mapping, b.preserve_ports) {
            (Mapping::EndpointIndependent, true) => {
                "mapping: endpoint-independent (RFC 4787 REQ-1): one public port per private endpoint, \
                 for every destination; the private port kept when free and in range (port preservation)"
            }
            (Mapping::EndpointIndependent, false) => {
                "mapping: endpoint-independent (RFC 4787 REQ-1): one public port per private endpoint, \
                 for every destination; chosen at random (no port preservation)"
            }
            (Mapping::Symmetric, _) => {
                "mapping: address-and-port-dependent (\"symmetric\"): each new destination endpoint \
                 gets a new public port, chosen at random"
            }
        };
        let filtering = match b.filtering {
            Filtering::EndpointIndependent => {
                "filtering: endpoint-independent (\"full cone\"): anyone may send to a mapped port"
            }
            Filtering::AddressDependent => {
                "filtering: address-dependent: a mapped port admits any port of an address its host has sent to"
            }
            Filtering::AddressAndPortDependent => {
                "filtering: address-and-port-dependent: a mapped port admits only the endpoints its host has sent to"
            }
        };
        let range = match b.ports {
            Some(n) => format!(
                "port range: {n} public ports, {NARROW_BASE}-{}",
                NARROW_BASE + (n - 1)
            ),
            None => "port range: 1024-65535".to_owned(),
        };
        let hairpin = if b.hairpin {
            "hairpinning: on (RFC 4787 REQ-9): a host reaches its neighbour's public endpoint, seen from its own"
        } else {
            "hairpinning: off: a datagram to the router's public address from inside reaches the router itself"
        };
        vec![mapping.into(), filtering.into(), range, hairpin.into()]
    }

    /// The nftables rulesets of the site's routers: `(host, ruleset)`.
    pub fn rulesets(&self, site: u8) -> Vec<(String, String)> {
        let (router, public) = site_names(site);
        match self {
            Nat::None => Vec::new(),
            Nat::NoFirewall => vec![(router, router_ruleset(Router::masquerade_only()))],
            Nat::Home(b) => vec![(router, ruleset(b, public))],
            Nat::Cgnat => vec![
                (
                    router,
                    ruleset(&Behaviour::home_behind_carrier(), HOME_BEHIND_CGNAT),
                ),
                (
                    format!("cgnat{site}"),
                    ruleset(&Behaviour::carrier(), public),
                ),
            ],
        }
    }
}

/// `router{site}` and the site's public address.
fn site_names(site: u8) -> (String, Ipv4Addr) {
    let public = if site == 1 {
        SITE1_PUBLIC
    } else {
        SITE2_PUBLIC
    };
    (format!("router{site}"), public)
}

/// The ruleset of a NAT with behaviour `b` whose `wan` address is `wan`.
pub fn ruleset(b: &Behaviour, wan: Ipv4Addr) -> String {
    let eim = b.mapping == Mapping::EndpointIndependent;
    let mut pre = Vec::new();
    match b.filtering {
        Filtering::EndpointIndependent => {
            pre.extend(both_maps(
                "iifname \"wan\" meta l4proto udp dnat ip to udp dport map @in",
            ));
        }
        Filtering::AddressDependent => {
            pre.extend(both_maps(
                "iifname \"wan\" udp dport . ip saddr @seen dnat ip to udp dport map @in",
            ));
        }
        Filtering::AddressAndPortDependent => {}
    }
    if b.hairpin {
        pre.extend(both_maps(&format!(
            "iifname \"lan\" ip daddr {wan} meta l4proto udp meta mark set 0x7 dnat ip to udp dport map @in"
        )));
    }
    let mut post = Vec::new();
    if b.hairpin {
        // Hairpinned (marked in prerouting: postrouting knows no input
        // interface): the neighbour must see the sender's public endpoint.
        if eim {
            post.extend(both_maps(&format!(
                "meta mark 0x7 meta l4proto udp snat ip to {wan} : ip saddr . udp sport map @out"
            )));
        }
        post.push(format!("meta mark 0x7 snat ip to {wan}"));
    }
    if eim {
        // A private endpoint that has a public port keeps it.
        post.extend(both_maps(&format!(
            "oifname \"wan\" meta l4proto udp snat ip to {wan} : ip saddr . udp sport map @out"
        )));
    }
    let flags = match (b.mapping, b.preserve_ports) {
        (Mapping::Symmetric, _) => " random,fully-random",
        (Mapping::EndpointIndependent, false) => " random,fully-random",
        (Mapping::EndpointIndependent, true) => "",
    };
    post.push(format!(
        "oifname \"wan\" meta l4proto udp snat ip to {wan}{}{flags}",
        b.range()
    ));
    post.push(format!("oifname \"wan\" snat ip to {wan}"));
    // A flow's first datagram is not yet confirmed by conntrack: two hosts'
    // first datagrams at the same instant can both get one port, and the
    // second is then dropped (insert_failed). So a first datagram's mapping
    // goes to short-lived maps (added, never overwritten), and only a
    // confirmed flow's to the lasting ones.
    let mut record = Vec::new();
    if eim {
        record.push(
            "oifname \"wan\" meta l4proto udp ct direction original add @out_new { ct original ip saddr . ct original proto-src : udp sport }",
        );
        record.push(
            "oifname \"wan\" meta l4proto udp ct direction original ct status confirmed update @out { ct original ip saddr . ct original proto-src : udp sport }",
        );
        record.push(
            "oifname \"wan\" meta l4proto udp ct direction reply update @out { ct reply ip saddr . ct reply proto-src : udp sport }",
        );
    }
    record.push(
        "oifname \"wan\" meta l4proto udp ct direction original add @in_new { udp sport : ct original ip saddr . ct original proto-src }",
    );
    record.push(
        "oifname \"wan\" meta l4proto udp ct direction original ct status confirmed update @in { udp sport : ct original ip saddr . ct original proto-src }",
    );
    record.push(
        "oifname \"wan\" meta l4proto udp ct direction reply update @in { udp sport : ct reply ip saddr . ct reply proto-src }",
    );
    if b.filtering == Filtering::AddressDependent {
        record.push("oifname \"wan\" update @seen { udp sport . ip daddr }");
    }
    let lines = |rules: &[String]| {
        rules
            .iter()
            .map(|rule| format!("\t\t{rule}\n"))
            .collect::<String>()
    };
    let record: Vec<String> = record.into_iter().map(str::to_owned).collect();
    format!(
        "table ip nat {{
\tmap out {{
\t\ttype ipv4_addr . inet_service : inet_service
\t\tflags dynamic,timeout
\t\ttimeout 5m
\t}}
\tmap in {{
\t\ttype inet_service : ipv4_addr . inet_service
\t\tflags dynamic,timeout
\t\ttimeout 5m
\t}}
\tmap out_new {{
\t\ttype ipv4_addr . inet_service : inet_service
\t\tflags dynamic,timeout
\t\ttimeout 2s
\t}}
\tmap in_new {{
\t\ttype inet_service : ipv4_addr . inet_service
\t\tflags dynamic,timeout
\t\ttimeout 2s
\t}}
\tset seen {{
\t\ttype inet_service . ipv4_addr
\t\tflags dynamic,timeout
\t\ttimeout 5m
\t}}
\tchain prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
{}\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
{}\t}}
\tchain record {{
\t\ttype filter hook postrouting priority srcnat + 10; policy accept;
{}\t}}
}}
{FIREWALL}",
        lines(&pre),
        lines(&post),
        lines(&record),
    )
}

/// `rule`, which looks a mapping up in `@in` or `@out`, then the same rule
/// on the short-lived map of first datagrams (see the record chain).
fn both_maps(rule: &str) -> [String; 2] {
    let new = rule
        .replace("map @in", "map @in_new")
        .replace("map @out", "map @out_new");
    [rule.to_owned(), new]
}

/// The firewall of every NAT kind but `none` and `no-firewall`: what
/// arrives on `wan` new to conntrack is dropped and counted, unless the
/// NAT's filtering translated it to a host inside (`ct status dnat`).
const FIREWALL: &str = "table inet firewall {
\tcounter unsolicited { }
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname \"wan\" ct state new counter name \"unsolicited\" drop
\t}
\tchain forward {
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname \"wan\" ct state new ct status dnat accept
\t\tiifname \"wan\" ct state new counter name \"unsolicited\" drop
\t}
}
";

impl Topology {
    /// Lesson 7's scene (see the module's drawing) with `nat1` at alice
    /// and carol's site and `nat2` at bob's.
    pub fn p2p_scene(nat1: Nat, nat2: Nat) -> Topology {
        let none = Ipv4Addr::UNSPECIFIED;
        let mut topology = Topology::new().host("internet").host("rendezvous");
        topology = topology
            .link(
                ("internet", "srv", Ipv4Addr::new(192, 0, 2, 1), 24),
                ("rendezvous", "eth0", RENDEZVOUS_IP, 24),
                1500,
            )
            .command(
                "rendezvous",
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("{SECOND_IP}/24"),
                    "dev",
                    "eth0",
                ],
            )
            .route("rendezvous", "default via 192.0.2.1")
            .sysctl("internet", "net.ipv4.ip_forward", "1");
        for (site, nat, hosts) in [
            (1u8, nat1, &["alice", "carol"][..]),
            (2, nat2, &["bob"][..]),
        ] {
            let (router, public) = site_names(site);
            let inet = if site == 1 {
                INTERNET_SITE1
            } else {
                INTERNET_SITE2
            };
            let uplink = format!("site{site}");
            // A public /24 per site: the wan link's half and the home's.
            let lan_public = Ipv4Addr::from(u32::from(public) + 127);
            let (gateway, first) = if nat == Nat::None {
                (lan_public, u32::from(lan_public) + 1)
            } else {
                (LAN_GATEWAY, u32::from(ALICE))
            };
            topology = topology.host(&router);
            if nat == Nat::Cgnat {
                let carrier = format!("cgnat{site}");
                topology = topology
                    .host(&carrier)
                    .link(
                        ("internet", &uplink, inet, 25),
                        (&carrier, "wan", public, 25),
                        1500,
                    )
                    .link(
                        (&carrier, "lan", CGNAT_INSIDE, 10),
                        (&router, "wan", HOME_BEHIND_CGNAT, 10),
                        1500,
                    )
                    .route(&carrier, &format!("default via {inet}"))
                    .route(&router, &format!("default via {CGNAT_INSIDE}"))
                    .sysctl(&carrier, "net.ipv4.ip_forward", "1");
            } else {
                topology = topology
                    .link(
                        ("internet", &uplink, inet, 25),
                        (&router, "wan", public, 25),
                        1500,
                    )
                    .route(&router, &format!("default via {inet}"));
            }
            topology = topology
                .route(
                    "internet",
                    &format!(
                        "{}/25 via {public}",
                        Ipv4Addr::from(u32::from(lan_public) - 1)
                    ),
                )
                .sysctl(&router, "net.ipv4.ip_forward", "1");
            for (index, host) in hosts.iter().enumerate() {
                let address = Ipv4Addr::from(first + index as u32);
                topology = topology
                    .host(host)
                    .link(
                        (&router, host, none, 0),
                        (
                            host,
                            "eth0",
                            address,
                            if nat == Nat::None { 25 } else { 24 },
                        ),
                        1500,
                    )
                    .route(host, &format!("default via {gateway}"));
            }
            let prefix = if nat == Nat::None { 25 } else { 24 };
            topology = topology.bridge(&router, "lan", Some((gateway, prefix)), hosts);
            for (host, rules) in nat.rulesets(site) {
                topology = topology.nft(&host, &rules);
            }
        }
        topology
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_name_reads_back_as_itself() {
        for name in KINDS.iter().copied().chain([
            "eim-apdf+hairpin",
            "eim-eif+no-pp",
            "apdm-apdf+ports=1024",
            "eim-adf+hairpin+no-pp+ports=512",
        ]) {
            let nat: Nat = name.parse().unwrap();
            assert_eq!(nat.to_string(), name);
        }
        for bad in [
            "eim",
            "apdm-apdf+no-pp",
            "none+hairpin",
            "eim-apdf+ports=3",
            "eim-apdf+x",
        ] {
            assert!(bad.parse::<Nat>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn the_scene_routes_between_the_homes_and_puts_cgnat_in_shared_space() {
        let topology = Topology::p2p_scene(Nat::Cgnat, Nat::None);
        assert_eq!(topology.address("rendezvous"), Some(RENDEZVOUS_IP));
        assert_eq!(topology.address("alice"), Some(ALICE));
        assert_eq!(
            topology.address("bob"),
            Some(Ipv4Addr::new(203, 0, 113, 130))
        );
        assert!(topology.find("cgnat1").is_some() && topology.find("cgnat2").is_none());
        let router1 = topology.find("router1").unwrap();
        assert!(
            router1
                .routes
                .contains(&format!("default via {CGNAT_INSIDE}"))
        );
        assert!(topology.find("router2").unwrap().nft.is_empty());
    }
}
