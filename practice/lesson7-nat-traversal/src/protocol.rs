//! The wire protocol of lesson 7: lesson 6's, plus a mapping check
//! (`MAPPING`, `MAPPED`), a role in `PEER`, and the relay (`ALLOCATE`,
//! `ALLOCATED`). One message per datagram, as a short line of text. Source
//! addresses can be forged, so two random numbers prove who speaks: a
//! peer's cookie in its requests, the session's token in every message
//! between the peers (relayed or not). `parse` is the grammar.

use std::fmt;
use std::io::Read;
use std::net::SocketAddr;

/// The longest request the rendezvous accepts. Its longest message, a
/// REGISTER with a 32-byte name, an IPv6 endpoint and a cookie, is under
/// 120 bytes; anything much longer is not from a peer of this lesson.
pub const MAX_REQUEST: usize = 512;

/// What the relay forwards at most, unless told otherwise: a chat line of
/// about a thousand bytes, in a datagram no path fragments.
pub const RELAY_MAX: usize = 1200;

/// The longest peer name; names are ASCII letters, digits, `-`, `_`, `.`.
pub const MAX_NAME: usize = 32;

/// The session's token: a 64-bit random number, written as 16 hex digits,
/// that the rendezvous gives both peers of a pair.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Token(pub u64);

/// A registration's cookie: a 64-bit random number, written as 16 hex
/// digits, that the rendezvous sends only to the peer's public endpoint.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Cookie(pub u64);

/// 64 bits from the kernel's random source.
pub fn random_u64() -> std::io::Result<u64> {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_ne_bytes(bytes))
}

impl Token {
    /// A fresh token from the kernel's random source.
    pub fn random() -> std::io::Result<Token> {
        random_u64().map(Token)
    }
}

impl Cookie {
    /// A fresh cookie from the kernel's random source.
    pub fn random() -> std::io::Result<Cookie> {
        random_u64().map(Cookie)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Display for Cookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Checks a peer name: 1 to 32 of `A-Z a-z 0-9 - _ .`. Used by clap for
/// `--name` and by the parser for every name on the wire, so a name can
/// never hold a space that would shift the fields of a message.
pub fn parse_name(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a name has 1 to {MAX_NAME} characters"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{bad:?} is not allowed in a name (letters, digits, '-', '_', '.')"
        ));
    }
    Ok(name.to_owned())
}

// ANCHOR: role
/// What a peer does once the direct punch failed, as the rendezvous decides
/// from the two mappings it saw (the chapter, "Who is hard?").
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Both NATs keep one port per socket: nothing better than the direct
    /// punch exists; the relay, if it fails.
    Punch,
    /// Our NAT gives each destination a new port: open many sockets toward
    /// the peer (birthday punching, the hard side).
    Spray,
    /// The peer's NAT does that: probe random ports of its public address.
    Scan,
    /// Both NATs do that: no punch will meet in time; the relay.
    Relay,
}

impl Role {
    const NAMES: [(Role, &'static str); 4] = [
        (Role::Punch, "punch"),
        (Role::Spray, "spray"),
        (Role::Scan, "scan"),
        (Role::Relay, "relay"),
    ];

    /// The role's word on the wire.
    pub fn name(self) -> &'static str {
        Role::NAMES
            .iter()
            .find(|(role, _)| *role == self)
            .map_or("punch", |(_, name)| name)
    }

    fn parse(word: &str) -> Result<Role, String> {
        Role::NAMES
            .iter()
            .find(|(_, name)| *name == word)
            .map(|(role, _)| *role)
            .ok_or_else(|| format!("{:?} is not a role", preview(word.as_bytes())))
    }
}
// ANCHOR_END: role

// ANCHOR: messages
/// Every message of the protocol.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Message {
    // Peer to rendezvous.
    /// `REGISTER <name> <private> [<cookie>]`: "I am `name`, and my socket
    /// is bound to `private` on my own network". The rendezvous adds what
    /// it alone can see: the public address the datagram came from. The
    /// first REGISTER has no cookie; a refresh carries the one it got.
    Register {
        name: String,
        private: SocketAddr,
        cookie: Option<Cookie>,
    },
    /// `CONNECT <name> <peer> <cookie>`: "`name` wants to talk to `peer`".
    Connect {
        name: String,
        peer: String,
        cookie: Cookie,
    },
    /// `MAPPING <name> <cookie>`, to the rendezvous's second port: from
    /// where does this come? The same port as REGISTER's, or another?
    Mapping { name: String, cookie: Cookie },
    /// `ALLOCATE <name> <peer> <token> <cookie>`: "relay `name`'s session
    /// with `peer`", after every punch failed.
    Allocate {
        name: String,
        peer: String,
        token: Token,
        cookie: Cookie,
    },

    // Rendezvous to peer.
    /// `REGISTERED <name> <public> <cookie>`: the public endpoint the
    /// rendezvous saw, and the cookie that later requests must carry.
    Registered {
        name: String,
        public: SocketAddr,
        cookie: Cookie,
    },
    /// `WAITING <peer>`: `peer` has not asked for you (yet).
    Waiting { peer: String },
    /// `MAPPED <name> <public>`, from the second port: where it saw us.
    Mapped { name: String, public: SocketAddr },
    /// `PEER <peer> <public> <private> <token> <role>`: both asked for each
    /// other; where the other one is, the session's token, and our role.
    Peer {
        peer: String,
        public: SocketAddr,
        private: SocketAddr,
        token: Token,
        role: Role,
    },
    /// `ALLOCATED <peer> <token> <max>`: both peers asked; the relay
    /// forwards the session's messages up to `max` bytes each.
    Allocated {
        peer: String,
        token: Token,
        max: usize,
    },
    /// `ERROR <reason>`: the request was refused.
    Error { reason: String },

    // Peer to peer: `<KIND> <from> <to> <token>`.
    /// A probe: sent to every endpoint of the peer until one answers. It
    /// also opens the sender's NAT for the peer's answer: the punch.
    Punch {
        from: String,
        to: String,
        token: Token,
    },
    /// A probe of the birthday punch, from either side. Answered as a
    /// probe is; it tells the receiver which way found the path.
    Birthday {
        from: String,
        to: String,
        token: Token,
    },
    /// The answer to a probe, sent back to where the probe came from.
    PunchAck {
        from: String,
        to: String,
        token: Token,
    },
    /// Sent when the chat is idle, to keep the NATs' mappings alive.
    Keepalive {
        from: String,
        to: String,
        token: Token,
    },
    /// The sender left the chat.
    Bye {
        from: String,
        to: String,
        token: Token,
    },
    /// `MSG <token> <text>`: a chat line. The text is the rest of the
    /// datagram, as typed, any bytes at all.
    Chat { token: Token, text: Vec<u8> },
}
// ANCHOR_END: messages

impl Message {
    /// The message as it goes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let line = match self {
            Message::Register {
                name,
                private,
                cookie: None,
            } => format!("REGISTER {name} {private}"),
            Message::Register {
                name,
                private,
                cookie: Some(cookie),
            } => format!("REGISTER {name} {private} {cookie}"),
            Message::Connect { name, peer, cookie } => format!("CONNECT {name} {peer} {cookie}"),
            Message::Mapping { name, cookie } => format!("MAPPING {name} {cookie}"),
            Message::Allocate {
                name,
                peer,
                token,
                cookie,
            } => format!("ALLOCATE {name} {peer} {token} {cookie}"),
            Message::Mapped { name, public } => format!("MAPPED {name} {public}"),
            Message::Allocated { peer, token, max } => format!("ALLOCATED {peer} {token} {max}"),
            Message::Registered {
                name,
                public,
                cookie,
            } => format!("REGISTERED {name} {public} {cookie}"),
            Message::Waiting { peer } => format!("WAITING {peer}"),
            Message::Peer {
                peer,
                public,
                private,
                token,
                role,
            } => format!("PEER {peer} {public} {private} {token} {}", role.name()),
            Message::Error { reason } => format!("ERROR {reason}"),
            Message::Punch { from, to, token } => format!("PUNCH {from} {to} {token}"),
            Message::Birthday { from, to, token } => format!("BIRTHDAY {from} {to} {token}"),
            Message::PunchAck { from, to, token } => format!("PUNCH-ACK {from} {to} {token}"),
            Message::Keepalive { from, to, token } => format!("KEEPALIVE {from} {to} {token}"),
            Message::Bye { from, to, token } => format!("BYE {from} {to} {token}"),
            Message::Chat { token, text } => {
                let mut bytes = format!("MSG {token} ").into_bytes();
                bytes.extend_from_slice(text);
                return bytes;
            }
        };
        line.into_bytes()
    }

    /// The message's first word, for log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Register { .. } => "REGISTER",
            Message::Connect { .. } => "CONNECT",
            Message::Mapping { .. } => "MAPPING",
            Message::Allocate { .. } => "ALLOCATE",
            Message::Mapped { .. } => "MAPPED",
            Message::Allocated { .. } => "ALLOCATED",
            Message::Registered { .. } => "REGISTERED",
            Message::Waiting { .. } => "WAITING",
            Message::Peer { .. } => "PEER",
            Message::Error { .. } => "ERROR",
            Message::Punch { .. } => "PUNCH",
            Message::Birthday { .. } => "BIRTHDAY",
            Message::PunchAck { .. } => "PUNCH-ACK",
            Message::Keepalive { .. } => "KEEPALIVE",
            Message::Bye { .. } => "BYE",
            Message::Chat { .. } => "MSG",
        }
    }
}

/// Reads one datagram as a message; the error says what is wrong with it.
pub fn parse(datagram: &[u8]) -> Result<Message, String> {
    // A chat line may hold any bytes after its header; everything else is
    // ASCII text.
    if let Some(rest) = datagram.strip_prefix(b"MSG ") {
        let header = rest.get(..16).ok_or("MSG without a token")?;
        let header = std::str::from_utf8(header).map_err(|_| "MSG token is not hex")?;
        let token = hex64(header, "token").map(Token)?;
        let text = rest
            .get(16..)
            .and_then(|after| after.strip_prefix(b" "))
            .ok_or("MSG without a space after its token")?;
        return Ok(Message::Chat {
            token,
            text: text.to_vec(),
        });
    }
    let line = std::str::from_utf8(datagram).map_err(|_| "not UTF-8 text")?;
    let mut fields = line.split(' ');
    let kind = fields.next().unwrap_or_default();
    let fields: Vec<&str> = fields.collect();
    match kind {
        "REGISTER" | "CONNECT" | "REGISTERED" | "WAITING" | "PEER" | "ERROR" | "MAPPING"
        | "MAPPED" | "ALLOCATE" | "ALLOCATED" => parse_rendezvous(kind, &fields),
        "PUNCH" | "BIRTHDAY" | "PUNCH-ACK" | "KEEPALIVE" | "BYE" => {
            want(kind, &fields, 3)?;
            let (from, to, token) = (
                parse_name(fields[0])?,
                parse_name(fields[1])?,
                hex64(fields[2], "token").map(Token)?,
            );
            Ok(match kind {
                "PUNCH" => Message::Punch { from, to, token },
                "BIRTHDAY" => Message::Birthday { from, to, token },
                "PUNCH-ACK" => Message::PunchAck { from, to, token },
                "KEEPALIVE" => Message::Keepalive { from, to, token },
                _ => Message::Bye { from, to, token },
            })
        }
        _ => Err(format!(
            "unknown message kind {:?}",
            preview(kind.as_bytes())
        )),
    }
}

/// The messages between a peer and the rendezvous.
fn parse_rendezvous(kind: &str, fields: &[&str]) -> Result<Message, String> {
    let cookie = |at: usize| hex64(fields[at], "cookie").map(Cookie);
    let message = match kind {
        "REGISTER" => {
            if !matches!(fields.len(), 2 | 3) {
                return Err(format!(
                    "REGISTER takes 2 or 3 fields, not {}",
                    fields.len()
                ));
            }
            Message::Register {
                name: parse_name(fields[0])?,
                private: endpoint(fields[1])?,
                cookie: if fields.len() == 3 {
                    Some(cookie(2)?)
                } else {
                    None
                },
            }
        }
        "CONNECT" => {
            want(kind, fields, 3)?;
            Message::Connect {
                name: parse_name(fields[0])?,
                peer: parse_name(fields[1])?,
                cookie: cookie(2)?,
            }
        }
        "REGISTERED" => {
            want(kind, fields, 3)?;
            Message::Registered {
                name: parse_name(fields[0])?,
                public: endpoint(fields[1])?,
                cookie: cookie(2)?,
            }
        }
        "WAITING" => {
            want(kind, fields, 1)?;
            Message::Waiting {
                peer: parse_name(fields[0])?,
            }
        }
        "PEER" => {
            want(kind, fields, 5)?;
            Message::Peer {
                peer: parse_name(fields[0])?,
                public: endpoint(fields[1])?,
                private: endpoint(fields[2])?,
                token: hex64(fields[3], "token").map(Token)?,
                role: Role::parse(fields[4])?,
            }
        }
        _ => return parse_lesson7(kind, fields),
    };
    Ok(message)
}

/// The requests and answers new in lesson 7, and ERROR.
fn parse_lesson7(kind: &str, fields: &[&str]) -> Result<Message, String> {
    let token = |at: usize| hex64(fields[at], "token").map(Token);
    let message = match kind {
        "MAPPING" => {
            want(kind, fields, 2)?;
            Message::Mapping {
                name: parse_name(fields[0])?,
                cookie: hex64(fields[1], "cookie").map(Cookie)?,
            }
        }
        "MAPPED" => {
            want(kind, fields, 2)?;
            Message::Mapped {
                name: parse_name(fields[0])?,
                public: endpoint(fields[1])?,
            }
        }
        "ALLOCATE" => {
            want(kind, fields, 4)?;
            Message::Allocate {
                name: parse_name(fields[0])?,
                peer: parse_name(fields[1])?,
                token: token(2)?,
                cookie: hex64(fields[3], "cookie").map(Cookie)?,
            }
        }
        "ALLOCATED" => {
            want(kind, fields, 3)?;
            Message::Allocated {
                peer: parse_name(fields[0])?,
                token: token(1)?,
                max: fields[2]
                    .parse()
                    .map_err(|_| format!("{:?} is not a size", preview(fields[2].as_bytes())))?,
            }
        }
        _ => Message::Error {
            reason: fields.join(" "),
        },
    };
    Ok(message)
}

/// The session token a message between the peers carries: what the relay
/// forwards by. `None` for every other message.
pub fn session_token(message: &Message) -> Option<Token> {
    match message {
        Message::Chat { token, .. }
        | Message::Keepalive { token, .. }
        | Message::Bye { token, .. } => Some(*token),
        _ => None,
    }
}

/// Checks that a message of `kind` has `count` fields.
fn want(kind: &str, fields: &[&str], count: usize) -> Result<(), String> {
    if fields.len() == count {
        Ok(())
    } else {
        Err(format!("{kind} takes {count} fields, not {}", fields.len()))
    }
}

fn endpoint(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("{:?} is not an IP:PORT endpoint", preview(text.as_bytes())))
}

/// A token or cookie (`what`): exactly 16 hex digits.
fn hex64(text: &str, what: &str) -> Result<u64, String> {
    if text.len() != 16 {
        return Err(format!(
            "a {what} has 16 hex digits, not {:?}",
            preview(text.as_bytes())
        ));
    }
    u64::from_str_radix(text, 16)
        .map_err(|_| format!("{:?} is not a hex {what}", preview(text.as_bytes())))
}

/// At most the first 40 bytes of `bytes`, escaped, for a log line about a
/// datagram that may hold anything (the line says how long it was).
pub fn preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(40)];
    let mut text: String = shown.escape_ascii().to_string();
    if shown.len() < bytes.len() {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: Token = Token(0x0123_4567_89ab_cdef);
    const COOKIE: Cookie = Cookie(0xfedc_ba98_7654_3210);

    fn names() -> (String, String) {
        ("alice".to_owned(), "bob".to_owned())
    }

    #[test]
    fn every_rendezvous_message_survives_encode_and_parse() {
        let (a, b) = names();
        let messages = [
            Message::Register {
                name: a.clone(),
                private: "192.168.1.2:55501".parse().unwrap(),
                cookie: None,
            },
            Message::Register {
                name: a.clone(),
                private: "[fd00::2]:55501".parse().unwrap(),
                cookie: Some(COOKIE),
            },
            Message::Connect {
                name: a.clone(),
                peer: b.clone(),
                cookie: COOKIE,
            },
            Message::Registered {
                name: a.clone(),
                public: "[2001:db8::1]:4000".parse().unwrap(),
                cookie: COOKIE,
            },
            Message::Waiting { peer: b.clone() },
            Message::Peer {
                peer: b.clone(),
                public: "203.0.113.2:55501".parse().unwrap(),
                private: "192.168.1.2:55501".parse().unwrap(),
                token: TOKEN,
                role: Role::Scan,
            },
            Message::Mapping {
                name: a.clone(),
                cookie: COOKIE,
            },
            Message::Mapped {
                name: a.clone(),
                public: "203.0.113.2:1025".parse().unwrap(),
            },
            Message::Allocate {
                name: a.clone(),
                peer: b.clone(),
                token: TOKEN,
                cookie: COOKIE,
            },
            Message::Allocated {
                peer: b.clone(),
                token: TOKEN,
                max: RELAY_MAX,
            },
            Message::Error {
                reason: "the name alice is taken".into(),
            },
        ];
        for message in messages {
            assert_eq!(parse(&message.encode()), Ok(message));
        }
        let connect = Message::Connect {
            name: a,
            peer: b,
            cookie: COOKIE,
        };
        assert_eq!(connect.encode(), b"CONNECT alice bob fedcba9876543210");
    }

    #[test]
    fn every_peer_message_survives_encode_and_parse() {
        let (a, b) = names();
        let (from, to, token) = (a.clone(), b.clone(), TOKEN);
        let messages = [
            Message::Punch { from, to, token },
            Message::Birthday {
                from: a.clone(),
                to: b.clone(),
                token,
            },
            Message::PunchAck {
                from: b.clone(),
                to: a.clone(),
                token,
            },
            Message::Keepalive {
                from: a.clone(),
                to: b.clone(),
                token,
            },
            Message::Bye {
                from: a,
                to: b,
                token,
            },
            Message::Chat {
                token,
                text: b"caf\xE9 MSG PUNCH \n and more".to_vec(),
            },
            Message::Chat {
                token,
                text: Vec::new(),
            },
        ];
        assert_eq!(messages[0].encode(), b"PUNCH alice bob 0123456789abcdef");
        for message in messages {
            assert_eq!(parse(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        for (datagram, reason) in [
            (&b""[..], "unknown message kind"),
            (b"HELLO", "unknown message kind"),
            (b"REGISTER alice", "REGISTER takes 2 or 3 fields, not 1"),
            (b"REGISTER alice 10.0.0.1", "not an IP:PORT"),
            (
                b"REGISTER al ice 10.0.0.1:5 0123456789abcdef",
                "takes 2 or 3 fields",
            ),
            (
                b"REGISTER alice 10.0.0.1:5 12",
                "a cookie has 16 hex digits",
            ),
            (b"REGISTER al\xffice 10.0.0.1:5", "not UTF-8"),
            (b"CONNECT alice bob", "CONNECT takes 3 fields, not 2"),
            (
                b"CONNECT alice bob\n 0123456789abcdef",
                "not allowed in a name",
            ),
            (b"CONNECT alice bob 0123456789abcdeg", "not a hex cookie"),
            (b"REGISTERED alice 10.0.0.1:5", "REGISTERED takes 3 fields"),
            (b"PUNCH alice bob 12", "16 hex digits"),
            (b"PUNCH alice bob 0123456789abcdeg", "not a hex token"),
            (b"MSG 0123", "MSG without a token"),
            (b"MSG 0123456789abcdefhello", "without a space"),
            (
                b"PEER bob 10.0.0.1:5 10.0.0.1:5 0123456789abcdef",
                "PEER takes 5 fields",
            ),
            (
                b"PEER bob 10.0.0.1:5 10.0.0.1:5 0123456789abcdef dance",
                "not a role",
            ),
            (b"MAPPING alice", "MAPPING takes 2 fields"),
            (b"ALLOCATE alice bob 0123456789abcdef", "ALLOCATE takes 4"),
            (b"ALLOCATED bob 0123456789abcdef -1", "not a size"),
        ] {
            let error = parse(datagram).unwrap_err();
            assert!(error.contains(reason), "{datagram:?}: {error}");
        }
        let long_name = "x".repeat(MAX_NAME + 1);
        assert!(parse_name(&long_name).is_err());
        assert!(parse_name(&"x".repeat(MAX_NAME)).is_ok());
    }

    #[test]
    fn previews_escape_and_shorten() {
        assert_eq!(preview(b"ab\xff\n"), "ab\\xff\\n");
        assert_eq!(preview(&[b'x'; 50]), format!("{}...", "x".repeat(40)));
    }
}
