//! The doctor's checks as pure functions of the text the kernel and tools print, so each one is
//! tested on real samples of that text. Every finding that is a problem says how to fix it.

use std::net::Ipv4Addr;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    /// Worth knowing, nothing to fix.
    Info,
    /// Will lose audio or fail to start: exit code 1.
    Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub message: String,
    /// Commands that fix it (as root), when it is a problem.
    pub fix: Option<String>,
}

impl Finding {
    fn new(check: &'static str, level: Level, message: impl Into<String>) -> Self {
        Finding {
            check,
            level,
            message: message.into(),
            fix: None,
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// One line of `/proc/net/route`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    device: String,
    destination: u32,
    mask: u32,
}

/// `/proc/net/route` holds addresses as little-endian hex words.
fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let word = |s: &str| u32::from_str_radix(s, 16).ok();
            Some(Route {
                device: (*f.first()?).to_owned(),
                destination: u32::from_be_bytes(word(f.get(1)?)?.to_le_bytes()),
                mask: u32::from_be_bytes(word(f.get(7)?)?.to_le_bytes()),
            })
        })
        .collect()
}

/// The device the kernel picks for IPv4 multicast that names no interface: the most specific
/// main-table route covering all of 224.0.0.0/4.
pub fn multicast_route(route_text: &str, interface: Option<&str>) -> Finding {
    const CHECK: &str = "multicast-route";
    let best = multicast_device(route_text);
    let dev = interface.unwrap_or("IFACE");
    let fix = format!("ip route add 224.0.0.0/4 dev {dev}");
    match (best, interface) {
        (None, _) => Finding::new(
            CHECK,
            Level::Problem,
            "no route covers 224.0.0.0/4: joining and sending multicast fails (ENODEV) unless an \
             interface is named",
        )
        .fix(fix),
        (Some(device), Some(want)) if device != want => Finding::new(
            CHECK,
            Level::Problem,
            format!(
                "multicast (224.0.0.0/4) is routed via {device}, not the AoIP interface {want}: \
                 discovery and anything that names no interface use the wrong network"
            ),
        )
        .fix(format!("{fix} metric 0")),
        (Some(device), _) => Finding::new(
            CHECK,
            Level::Ok,
            format!("224.0.0.0/4 is routed via {device}"),
        ),
    }
}

/// The device of the most specific main-table route covering all of 224.0.0.0/4.
pub fn multicast_device(route_text: &str) -> Option<String> {
    let group = u32::from(Ipv4Addr::new(224, 0, 0, 0));
    parse_routes(route_text)
        .into_iter()
        .filter(|r| r.mask.leading_ones() <= 4 && group & r.mask == r.destination)
        .max_by_key(|r| r.mask.leading_ones())
        .map(|r| r.device)
}

/// Reverse-path filtering: strict mode (1) drops multicast whose source is not reachable back
/// through the receiving interface, which is common on a dedicated AoIP network. The kernel
/// uses the larger of `all` and the interface's value.
pub fn rp_filter(all: &str, interface: &str, value: &str) -> Finding {
    const CHECK: &str = "rp-filter";
    let all_v: u8 = all.trim().parse().unwrap_or(0);
    let if_v: u8 = value.trim().parse().unwrap_or(0);
    if all_v.max(if_v) == 1 {
        Finding::new(
            CHECK,
            Level::Problem,
            format!(
                "strict reverse-path filtering on {interface} (all={all_v}, {interface}={if_v}) \
                 drops streams from senders not routed back through {interface}; make it \
                 loose, and persist it in /etc/sysctl.d/50-estuary.conf"
            ),
        )
        .fix(format!(
            "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.{interface}.rp_filter=2"
        ))
    } else {
        Finding::new(
            CHECK,
            Level::Ok,
            format!("rp_filter on {interface}: {}", all_v.max(if_v)),
        )
    }
}

/// The daemon asks for `needed` bytes of receive buffer per input socket; without
/// CAP_NET_ADMIN (the service does not have it) the kernel caps it at `rmem_max`.
pub fn rmem_max(text: &str, needed: usize) -> Finding {
    const CHECK: &str = "rmem-max";
    match text.trim().parse::<usize>() {
        Ok(v) if v >= needed => Finding::new(
            CHECK,
            Level::Ok,
            format!("net.core.rmem_max {v} ≥ {needed} bytes per input"),
        ),
        Ok(v) => Finding::new(
            CHECK,
            Level::Problem,
            format!(
                "net.core.rmem_max is {v} bytes; each input asks for {needed}: a burst or a \
                 scheduling hiccup overflows the socket and packets are lost (persist the fix \
                 in /etc/sysctl.d/50-estuary.conf)"
            ),
        )
        .fix(format!("sysctl -w net.core.rmem_max={needed}")),
        Err(_) => Finding::new(CHECK, Level::Info, "net.core.rmem_max unreadable"),
    }
}

/// `/sys/class/net/IF/mtu` against the largest RTP datagram of the configured inputs.
pub fn mtu(interface: &str, text: &str, largest_datagram: usize) -> Finding {
    const CHECK: &str = "mtu";
    match text.trim().parse::<usize>() {
        Ok(mtu) if mtu >= largest_datagram => Finding::new(
            CHECK,
            Level::Ok,
            format!("{interface} MTU {mtu} ≥ {largest_datagram} bytes per packet"),
        ),
        Ok(mtu) => Finding::new(
            CHECK,
            Level::Problem,
            format!(
                "{interface} MTU {mtu} is smaller than the {largest_datagram}-byte packets of \
                 the configured streams: they arrive fragmented or not at all"
            ),
        )
        .fix(format!("ip link set {interface} mtu 1500")),
        Err(_) => Finding::new(CHECK, Level::Problem, format!("no interface {interface}"))
            .fix("set `interface` in the config to one listed by `ip -br link`"),
    }
}

/// `/proc/net/igmp`: is the interface a member of each group (only meaningful while the daemon
/// runs), and does the kernel allow that many memberships per socket.
pub fn igmp(igmp_text: &str, max_memberships: &str, groups: &[Ipv4Addr], running: bool) -> Finding {
    const CHECK: &str = "igmp";
    let max: usize = max_memberships.trim().parse().unwrap_or(20);
    if groups.len() > max {
        return Finding::new(
            CHECK,
            Level::Problem,
            format!(
                "{} multicast groups configured, net.ipv4.igmp_max_memberships is {max}",
                groups.len()
            ),
        )
        .fix(format!(
            "sysctl -w net.ipv4.igmp_max_memberships={}",
            groups.len().max(64)
        ));
    }
    if !running || groups.is_empty() {
        return Finding::new(
            CHECK,
            Level::Ok,
            format!(
                "{} group(s) configured, up to {max} allowed{}",
                groups.len(),
                if running {
                    ""
                } else {
                    " (daemon not running: memberships not checked)"
                }
            ),
        );
    }
    let joined = joined_groups(igmp_text);
    let missing: Vec<String> = groups
        .iter()
        .filter(|g| !joined.contains(g))
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        Finding::new(CHECK, Level::Ok, "every configured group is joined")
    } else {
        Finding::new(
            CHECK,
            Level::Problem,
            format!(
                "not joined although the daemon runs: {}",
                missing.join(", ")
            ),
        )
        .fix("check the input's `interface` and `journalctl -u estuary` for join errors")
    }
}

/// Groups in `/proc/net/igmp` (little-endian hex, indented under each device line).
fn joined_groups(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter(|l| l.starts_with(char::is_whitespace))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|hex| u32::from_str_radix(hex, 16).ok())
        .map(|v| Ipv4Addr::from(v.to_le_bytes()))
        .collect()
}

/// UDP ports bound, from `/proc/net/udp` and `/proc/net/udp6`.
pub fn bound_udp_ports(text: &str) -> Vec<u16> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|local| local.rsplit(':').next())
        .filter_map(|port| u16::from_str_radix(port, 16).ok())
        .collect()
}

const PTP_DAEMONS: [&str; 4] = ["ptp4l", "phc2sys", "ptpd", "ptpd2"];
const NTP_DAEMONS: [&str; 5] = [
    "chronyd",
    "ntpd",
    "systemd-timesyn",
    "openntpd",
    "timesyncd",
];

/// PTP event/general ports (319/320): who holds them.
pub fn ptp_ports(bound: &[u16], processes: &[String]) -> Finding {
    const CHECK: &str = "ptp-ports";
    let taken: Vec<u16> = [319, 320]
        .into_iter()
        .filter(|p| bound.contains(p))
        .collect();
    let ptp: Vec<&String> = processes
        .iter()
        .filter(|p| PTP_DAEMONS.contains(&p.as_str()))
        .collect();
    match (taken.is_empty(), ptp.is_empty()) {
        (true, _) => Finding::new(CHECK, Level::Ok, "UDP 319/320 free"),
        (false, false) => Finding::new(
            CHECK,
            Level::Info,
            format!(
                "UDP {taken:?} held by the PTP daemon here ({}): it disciplines the clock",
                ptp.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (false, true) => Finding::new(
            CHECK,
            Level::Problem,
            format!("UDP {taken:?} are bound by a process that is not a known PTP daemon"),
        )
        .fix("find it with `ss -ulpn 'sport = :319 or sport = :320'` and stop it"),
    }
}

/// NTP daemons step and slew the same clock PTP disciplines; two of them fight.
pub fn time_daemons(processes: &[String]) -> Finding {
    const CHECK: &str = "time-daemons";
    let ntp: Vec<&str> = processes
        .iter()
        .map(String::as_str)
        .filter(|p| NTP_DAEMONS.contains(p))
        .collect();
    let ptp = processes
        .iter()
        .any(|p| p == "phc2sys" || p == "ptpd" || p == "ptpd2");
    let list = ntp.join(", ");
    if ptp && !ntp.is_empty() {
        Finding::new(
            CHECK,
            Level::Problem,
            format!("{list} and a PTP daemon both steer the system clock"),
        )
        .fix("systemctl disable --now chrony ntp systemd-timesyncd")
    } else if ntp.len() > 1 {
        Finding::new(
            CHECK,
            Level::Problem,
            format!("several NTP daemons steer the clock: {list}"),
        )
        .fix("keep one: e.g. systemctl disable --now systemd-timesyncd")
    } else if ntp.is_empty() {
        Finding::new(
            CHECK,
            Level::Info,
            "no NTP or PTP daemon: the clock is free-running",
        )
    } else {
        Finding::new(CHECK, Level::Ok, format!("one time daemon: {list}"))
    }
}

/// `scaling_governor` of each CPU: anything but `performance` ramps the clock down between
/// packets and adds wake-up latency.
pub fn cpu_governor(governors: &[(String, String)]) -> Finding {
    const CHECK: &str = "cpu-governor";
    if governors.is_empty() {
        return Finding::new(CHECK, Level::Info, "no cpufreq (a VM, or fixed clock)");
    }
    let slow: Vec<String> = governors
        .iter()
        .filter(|(_, g)| g.trim() != "performance")
        .map(|(cpu, g)| format!("{cpu}={}", g.trim()))
        .collect();
    if slow.is_empty() {
        Finding::new(CHECK, Level::Ok, "every CPU at `performance`")
    } else {
        Finding::new(
            CHECK,
            Level::Problem,
            format!(
                "CPU frequency scaling: {} (persist the fix with cpufrequtils \
                 GOVERNOR=performance)",
                slow.join(" ")
            ),
        )
        .fix("echo performance | tee /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor")
    }
}

/// SCHED_FIFO for the audio threads needs CAP_SYS_NICE or a non-zero RLIMIT_RTPRIO.
/// `limits` is `/proc/self/limits`, `status` is `/proc/self/status`.
pub fn realtime(limits: &str, status: &str) -> Finding {
    const CHECK: &str = "realtime";
    let rtprio = limits
        .lines()
        .find(|l| l.starts_with("Max realtime priority"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or("0");
    let cap_sys_nice = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 23) != 0);
    if cap_sys_nice || rtprio != "0" {
        Finding::new(
            CHECK,
            Level::Ok,
            format!("SCHED_FIFO allowed (CAP_SYS_NICE: {cap_sys_nice}, RLIMIT_RTPRIO: {rtprio})"),
        )
    } else {
        Finding::new(
            CHECK,
            Level::Problem,
            "no CAP_SYS_NICE and RLIMIT_RTPRIO 0: the audio threads run with normal priority \
             and a busy CPU delays them",
        )
        .fix(
            "run it as the packaged service (AmbientCapabilities=CAP_SYS_NICE), or add \
             `estuary - rtprio 90` to /etc/security/limits.d/estuary.conf",
        )
    }
}

/// A firewall that drops by default must let the configured ports in. `ruleset` is
/// `nft list ruleset`; a rule naming the port (`dport 5004`, or in a set) counts as allowing it.
pub fn firewall(ruleset: Option<&str>, udp: &[u16], tcp: &[u16]) -> Finding {
    const CHECK: &str = "firewall";
    let Some(ruleset) = ruleset else {
        return Finding::new(
            CHECK,
            Level::Info,
            "nft not installed: firewall not checked",
        );
    };
    let drops = ruleset.lines().any(|l| {
        let l = l.trim();
        l.contains("hook input") && (l.contains("policy drop") || l.contains("policy reject"))
    });
    if !drops {
        return Finding::new(CHECK, Level::Ok, "no input chain drops by default");
    }
    let named = |port: u16| {
        let p = port.to_string();
        ruleset.split(|c: char| !c.is_ascii_digit()).any(|w| w == p)
    };
    let closed: Vec<String> = udp
        .iter()
        .filter(|&&p| !named(p))
        .map(|p| format!("udp {p}"))
        .chain(
            tcp.iter()
                .filter(|&&p| !named(p))
                .map(|p| format!("tcp {p}")),
        )
        .collect();
    if closed.is_empty() {
        Finding::new(
            CHECK,
            Level::Ok,
            "the input policy drops, and every port in use is named",
        )
    } else {
        let rules: Vec<String> = closed
            .iter()
            .map(|c| {
                format!(
                    "nft add rule inet filter input {} dport {} accept",
                    &c[..3],
                    &c[4..]
                )
            })
            .collect();
        Finding::new(
            CHECK,
            Level::Problem,
            format!(
                "the input policy drops and no rule names {}",
                closed.join(", ")
            ),
        )
        .fix(rules.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
eth1\t000000E0\t00000000\t0001\t0\t0\t0\t000000F0\t0\t0\t0
";

    #[test]
    fn multicast_route_picks_the_most_specific() {
        let f = multicast_route(ROUTES, Some("eth1"));
        assert_eq!(f.level, Level::Ok, "{f:?}");
        let f = multicast_route(ROUTES, Some("eth0"));
        assert_eq!(f.level, Level::Problem);
        assert!(f.message.contains("via eth1"));
        // Only the default route: it covers 224/4, so multicast goes where it goes.
        let only_default: String = ROUTES.lines().take(2).collect::<Vec<_>>().join("\n");
        assert_eq!(
            multicast_route(&only_default, Some("eth0")).level,
            Level::Ok
        );
        let none = multicast_route(ROUTES.lines().next().unwrap_or(""), Some("eth1"));
        assert_eq!(none.level, Level::Problem);
        assert_eq!(
            none.fix.as_deref(),
            Some("ip route add 224.0.0.0/4 dev eth1")
        );
        assert_eq!(parse_routes("garbage\n\u{0}\nx y z").len(), 0);
    }

    #[test]
    fn rp_filter_strict_is_a_problem_loose_is_not() {
        assert_eq!(rp_filter("0", "eth1", "1\n").level, Level::Problem);
        assert_eq!(rp_filter("1", "eth1", "0").level, Level::Problem);
        assert_eq!(rp_filter("2", "eth1", "1").level, Level::Ok);
        assert_eq!(rp_filter("0", "eth1", "0").level, Level::Ok);
    }

    #[test]
    fn rmem_max_against_need() {
        assert_eq!(rmem_max("212992\n", 4 << 20).level, Level::Problem);
        assert!(
            rmem_max("212992", 4 << 20)
                .fix
                .unwrap_or_default()
                .contains("4194304")
        );
        assert_eq!(rmem_max("4194304", 4 << 20).level, Level::Ok);
    }

    #[test]
    fn igmp_groups_are_little_endian() {
        let text = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter
1\tlo        :     2      V3
\t\t\t\t0500FFEF     1 0:00000000\t\t0
\t\t\t\t010000E0     1 0:00000000\t\t0
";
        let g: Ipv4Addr = "239.255.0.5".parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
        assert_eq!(joined_groups(text), vec![g, Ipv4Addr::new(224, 0, 0, 1)]);
        assert_eq!(igmp(text, "20", &[g], true).level, Level::Ok);
        let other = Ipv4Addr::new(239, 1, 1, 1);
        assert_eq!(igmp(text, "20", &[other], true).level, Level::Problem);
        assert_eq!(igmp(text, "20", &[other], false).level, Level::Ok);
        assert_eq!(igmp(text, "0", &[other], false).level, Level::Problem);
    }

    #[test]
    fn udp_ports_and_ptp() {
        let udp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
  1: 00000000:013F 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 3
  2: 0100007F:138C 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 3
";
        assert_eq!(bound_udp_ports(udp), vec![319, 5004]);
        let ptp4l = vec!["ptp4l".to_owned()];
        assert_eq!(ptp_ports(&[319], &ptp4l).level, Level::Info);
        assert_eq!(ptp_ports(&[319], &[]).level, Level::Problem);
        assert_eq!(ptp_ports(&[5004], &[]).level, Level::Ok);
    }

    #[test]
    fn time_daemons_fight() {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            time_daemons(&s(&["chronyd", "phc2sys"])).level,
            Level::Problem
        );
        assert_eq!(
            time_daemons(&s(&["chronyd", "systemd-timesyn"])).level,
            Level::Problem
        );
        assert_eq!(time_daemons(&s(&["chronyd"])).level, Level::Ok);
        assert_eq!(time_daemons(&s(&["bash"])).level, Level::Info);
    }

    #[test]
    fn governor_and_realtime() {
        let g = |v: &str| vec![("cpu0".to_owned(), v.to_owned())];
        assert_eq!(cpu_governor(&g("performance\n")).level, Level::Ok);
        assert_eq!(cpu_governor(&g("ondemand")).level, Level::Problem);
        assert_eq!(cpu_governor(&[]).level, Level::Info);
        let limits = "Limit                     Soft Limit           Hard Limit           Units
Max realtime priority     0                    0
";
        assert_eq!(
            realtime(limits, "CapEff:\t0000000000000000\n").level,
            Level::Problem
        );
        assert_eq!(
            realtime(limits, "CapEff:\t0000000000800000\n").level,
            Level::Ok
        );
        let limits90 = limits.replace("0                    0", "90                   90");
        assert_eq!(realtime(&limits90, "CapEff:\t0\n").level, Level::Ok);
    }

    #[test]
    fn firewall_names_closed_ports() {
        let ruleset = "table inet filter {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tudp dport { 5004, 9875 } accept
\t}
}";
        assert_eq!(firewall(Some(ruleset), &[5004, 9875], &[]).level, Level::Ok);
        let f = firewall(Some(ruleset), &[5004, 9000], &[8480]);
        assert_eq!(f.level, Level::Problem);
        assert!(f.message.contains("udp 9000, tcp 8480"), "{}", f.message);
        assert!(f.fix.unwrap_or_default().contains("tcp dport 8480 accept"));
        assert_eq!(firewall(Some(""), &[1], &[]).level, Level::Ok);
        assert_eq!(firewall(None, &[1], &[]).level, Level::Info);
    }

    #[test]
    fn mtu_against_packets() {
        assert_eq!(mtu("eth0", "1500\n", 1192).level, Level::Ok);
        assert_eq!(mtu("eth0", "1000", 1192).level, Level::Problem);
        assert_eq!(mtu("nope", "", 1192).level, Level::Problem);
    }
}
