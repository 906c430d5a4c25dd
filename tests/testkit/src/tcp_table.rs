//! A look at the kernel's TCP table, to see TIME-WAIT with one's own eyes.
//!
//! `/proc/net/tcp` and `/proc/net/tcp6` list every TCP socket on the machine,
//! including the ones no process owns any more (orphans and TIME-WAIT). The
//! TIME_WAIT tests read them directly, so they need no tool installed; the
//! book's transcript uses `ss`, the tool a reader would type. (Not the
//! procfs crate: its TCP entries leave out the timer column, which the
//! TIME-WAIT tests read.)

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use nix::unistd::{SysconfVar, sysconf};

/// A TCP state, as numbered in the kernel's `include/net/tcp_states.h`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    Other(u8),
}

impl TcpState {
    fn from_code(code: u8) -> TcpState {
        use TcpState::*;
        match code {
            0x01 => Established,
            0x02 => SynSent,
            0x03 => SynRecv,
            0x04 => FinWait1,
            0x05 => FinWait2,
            0x06 => TimeWait,
            0x07 => Close,
            0x08 => CloseWait,
            0x09 => LastAck,
            0x0A => Listen,
            0x0B => Closing,
            other => Other(other),
        }
    }

    /// The name `ss` prints for the state.
    pub fn ss_name(self) -> String {
        use TcpState::*;
        match self {
            Established => "ESTAB".into(),
            SynSent => "SYN-SENT".into(),
            SynRecv => "SYN-RECV".into(),
            FinWait1 => "FIN-WAIT-1".into(),
            FinWait2 => "FIN-WAIT-2".into(),
            TimeWait => "TIME-WAIT".into(),
            Close => "UNCONN".into(),
            CloseWait => "CLOSE-WAIT".into(),
            LastAck => "LAST-ACK".into(),
            Listen => "LISTEN".into(),
            Closing => "CLOSING".into(),
            Other(code) => format!("STATE-{code:02X}"),
        }
    }
}

/// One row of the kernel's TCP table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TcpSocket {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// What `ss` shows as Send-Q: bytes written but not yet acknowledged
    /// by the other side (the `tx_queue` column).
    pub send_queue: u64,
    /// What `ss` shows as Recv-Q: bytes received but not yet read by the
    /// program (the `rx_queue` column).
    pub receive_queue: u64,
    /// The timer running on the socket, if any: for a TIME-WAIT row, the
    /// time left before the kernel forgets the connection.
    pub timer: Option<SocketTimer>,
}

/// A socket's pending timer, from the `tr:tm->when` column.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SocketTimer {
    /// The kernel's timer kind: 1 retransmit, 2 keepalive, 3 TIME-WAIT,
    /// 4 zero-window probe.
    pub kind: u8,
    pub left: Duration,
}

impl fmt::Display for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.state.ss_name(), self.local, self.remote)
    }
}

/// Every TCP socket on the machine, IPv4 and IPv6.
pub fn tcp_sockets() -> Vec<TcpSocket> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(parse_row)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `  0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 03:00001770 …` →
/// local, remote, state, the send and receive queues, and the timer (kind
/// 03, 0x1770 clock ticks left).
fn parse_row(row: &str) -> Option<TcpSocket> {
    let mut fields = row.split_whitespace().skip(1);
    let local = parse_endpoint(fields.next()?)?;
    let remote = parse_endpoint(fields.next()?)?;
    let state = TcpState::from_code(u8::from_str_radix(fields.next()?, 16).ok()?);
    let (send_queue, receive_queue) = fields.next()?.split_once(':')?;
    let send_queue = u64::from_str_radix(send_queue, 16).ok()?;
    let receive_queue = u64::from_str_radix(receive_queue, 16).ok()?;
    let (kind, ticks) = fields.next()?.split_once(':')?;
    let kind = u8::from_str_radix(kind, 16).ok()?;
    let ticks = u64::from_str_radix(ticks, 16).ok()?;
    let timer = (kind != 0).then(|| SocketTimer {
        kind,
        left: Duration::from_secs_f64(ticks as f64 / ticks_per_second()),
    });
    Some(TcpSocket {
        state,
        local,
        remote,
        send_queue,
        receive_queue,
        timer,
    })
}

/// The unit of the kernel's timer columns (USER_HZ, in practice 100).
fn ticks_per_second() -> f64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as f64,
        _ => 100.0,
    }
}

/// The address is the raw in-memory bytes printed as native-endian 32-bit
/// words; the port is a plain hexadecimal number.
pub(crate) fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let bytes: Vec<u8> = words.iter().flat_map(|word| word.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The lines of `ss -tan` whose local address is `local` and whose state is
/// `state`, with runs of blanks folded to one (ss pads columns to the widest
/// entry, which would make a stored transcript change with the port numbers).
/// `None` when `ss` is not installed.
pub fn ss_line(state: TcpState, local: SocketAddr) -> Option<Vec<String>> {
    let output = Command::new("ss").arg("-tan").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let wanted_state = state.ss_name();
    let wanted_local = local.to_string();
    Some(
        text.lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|fields| {
                fields.first() == Some(&wanted_state.as_str())
                    && fields.get(3) == Some(&wanted_local.as_str())
            })
            .map(|fields| fields.join(" "))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ipv4_and_ipv6_rows() {
        let v4 = "   0: 0100007F:22B2 0100007F:A1C2 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000";
        let socket = parse_row(v4).unwrap();
        assert_eq!(socket.state, TcpState::TimeWait);
        let timer = socket.timer.unwrap();
        assert_eq!(timer.kind, 3);
        assert_eq!(
            timer.left,
            Duration::from_secs_f64(0x1770 as f64 / ticks_per_second())
        );
        assert_eq!(socket.local, "127.0.0.1:8882".parse().unwrap());
        assert_eq!(socket.remote, "127.0.0.1:41410".parse().unwrap());
        let v6 = "   1: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0";
        let socket = parse_row(v6).unwrap();
        assert_eq!(socket.state, TcpState::Listen);
        assert_eq!(socket.local, "[::1]:8080".parse().unwrap());
        assert_eq!(socket.timer, None);
    }

    #[test]
    fn sees_a_listening_socket_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let local = listener.local_addr().unwrap();
        let found = tcp_sockets()
            .into_iter()
            .find(|socket| socket.local == local)
            .unwrap();
        assert_eq!(found.state, TcpState::Listen);
    }
}
