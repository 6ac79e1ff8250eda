//! Published ports (SPEC §8): what `-p/--publish` declares, its two spellings, and where a
//! running task can be reached for each port it publishes.
//!
//! A port is published either through the routing mesh (`ingress`, the default: every node
//! listens on it and forwards to any healthy task) or on the task's own node (`host`).

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::error::CoreError;

/// TCP or UDP.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortProtocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortProtocol::Tcp => "tcp",
            PortProtocol::Udp => "udp",
        })
    }
}

/// Where a published port is bound.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PublishMode {
    /// On every node, forwarded through the routing mesh (the default).
    Ingress,
    /// Only on the node that runs the task, bound directly; one such task per node.
    Host,
}

impl fmt::Display for PublishMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PublishMode::Ingress => "ingress",
            PublishMode::Host => "host",
        })
    }
}

/// One `--publish`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortConfig {
    /// The port clients connect to (1-65535), unique in the cluster per protocol.
    pub published: u16,
    /// The port the task listens on inside its container (process runtime: the name of its
    /// `FLOTILLA_PORT_<target>` variable).
    pub target: u16,
    /// TCP or UDP.
    pub protocol: PortProtocol,
    /// Ingress or host.
    pub mode: PublishMode,
    /// Send a PROXY protocol v2 header first, so the task sees the client's address
    /// (`proxy-protocol=v2`; ingress TCP only).
    pub proxy_protocol: bool,
}

impl PortConfig {
    /// `*:8080->80/tcp`, as `service ls` PORTS shows it.
    pub fn display(&self) -> String {
        format!("*:{}->{}/{}", self.published, self.target, self.protocol)
    }
}

/// The ports of `ports` published in `mode`, as the PORTS columns show them.
pub fn display_ports(ports: &[PortConfig], mode: PublishMode) -> Vec<String> {
    ports
        .iter()
        .filter(|port| port.mode == mode)
        .map(PortConfig::display)
        .collect()
}

/// Where a running task's target port is reached from other nodes: the node's advertise IP
/// and the host port its runtime bound (or gave the process).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TaskEndpoint {
    /// The target port this reaches.
    pub target: u16,
    /// TCP or UDP.
    pub protocol: PortProtocol,
    /// Host address and port.
    pub addr: SocketAddr,
}

fn publish_error(text: &str, reason: &str) -> CoreError {
    CoreError::parse("publish spec (--publish)", text, reason)
}

fn parse_port(text: &str, whole: &str, which: &str) -> Result<u16, CoreError> {
    let value: u32 = text
        .trim()
        .parse()
        .map_err(|_| publish_error(whole, &format!("{which} port {text:?} is not a number")))?;
    if value == 0 || value > 65_535 {
        return Err(publish_error(
            whole,
            &format!("{which} port {value} is outside 1-65535"),
        ));
    }
    Ok(value as u16)
}

fn parse_protocol(text: &str, whole: &str) -> Result<PortProtocol, CoreError> {
    match text {
        "tcp" => Ok(PortProtocol::Tcp),
        "udp" => Ok(PortProtocol::Udp),
        other => Err(publish_error(
            whole,
            &format!("protocol {other:?} is not tcp or udp"),
        )),
    }
}

/// Parses `-p`/`--publish`: the long form
/// `published=8080,target=80[,protocol=tcp|udp][,mode=ingress|host][,proxy-protocol=v2]` or
/// the short form `8080:80[/udp]`.
pub fn parse_publish(text: &str) -> Result<PortConfig, CoreError> {
    let text = text.trim();
    if text.contains('=') {
        parse_long(text)
    } else {
        parse_short(text)
    }
}

fn parse_short(text: &str) -> Result<PortConfig, CoreError> {
    let (ports, protocol) = match text.split_once('/') {
        Some((ports, protocol)) => (ports, parse_protocol(protocol, text)?),
        None => (text, PortProtocol::Tcp),
    };
    let (published, target) = ports.split_once(':').ok_or_else(|| {
        publish_error(
            text,
            "expected PUBLISHED:TARGET[/udp] or published=N,target=N",
        )
    })?;
    Ok(PortConfig {
        published: parse_port(published, text, "published")?,
        target: parse_port(target, text, "target")?,
        protocol,
        mode: PublishMode::Ingress,
        proxy_protocol: false,
    })
}

fn parse_long(text: &str) -> Result<PortConfig, CoreError> {
    let (mut published, mut target) = (None, None);
    let mut protocol = PortProtocol::Tcp;
    let mut mode = PublishMode::Ingress;
    let mut proxy_protocol = false;
    for field in text.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| publish_error(text, &format!("{field:?} is not KEY=VALUE")))?;
        match key.trim() {
            "published" => published = Some(parse_port(value, text, "published")?),
            "target" => target = Some(parse_port(value, text, "target")?),
            "protocol" => protocol = parse_protocol(value.trim(), text)?,
            "mode" => {
                mode = match value.trim() {
                    "ingress" => PublishMode::Ingress,
                    "host" => PublishMode::Host,
                    other => {
                        return Err(publish_error(
                            text,
                            &format!("mode {other:?} is not ingress or host"),
                        ))
                    }
                }
            }
            "proxy-protocol" => {
                proxy_protocol = match value.trim() {
                    "v2" => true,
                    "none" | "" => false,
                    other => {
                        return Err(publish_error(
                            text,
                            &format!("proxy-protocol {other:?} is not v2"),
                        ))
                    }
                }
            }
            other => {
                return Err(publish_error(
                    text,
                    &format!(
                    "unknown field {other:?} (published, target, protocol, mode, proxy-protocol)"
                ),
                ))
            }
        }
    }
    let published = published.ok_or_else(|| publish_error(text, "published= is missing"))?;
    let target = target.ok_or_else(|| publish_error(text, "target= is missing"))?;
    if proxy_protocol && (protocol == PortProtocol::Udp || mode == PublishMode::Host) {
        return Err(publish_error(
            text,
            "proxy-protocol=v2 is only for tcp ports in ingress mode",
        ));
    }
    Ok(PortConfig {
        published,
        target,
        protocol,
        mode,
        proxy_protocol,
    })
}

/// Checks one service's ports among themselves: no published port (per protocol) twice.
pub fn validate_ports(ports: &[PortConfig]) -> Result<(), CoreError> {
    for (index, port) in ports.iter().enumerate() {
        if let Some(other) = ports[..index]
            .iter()
            .find(|other| other.published == port.published && other.protocol == port.protocol)
        {
            return Err(CoreError::InvalidSpec(format!(
                "published port {}/{} is given twice ({} and {})",
                port.published,
                port.protocol,
                other.display(),
                port.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_parse() {
        let short = parse_publish("8080:80").expect("short");
        assert_eq!(
            short,
            PortConfig {
                published: 8080,
                target: 80,
                protocol: PortProtocol::Tcp,
                mode: PublishMode::Ingress,
                proxy_protocol: false
            }
        );
        assert_eq!(
            parse_publish("53:5353/udp").expect("udp").protocol,
            PortProtocol::Udp
        );
        let long = parse_publish("published=8080,target=80,protocol=tcp,mode=host").expect("long");
        assert_eq!(long.mode, PublishMode::Host);
        assert_eq!((long.published, long.target), (8080, 80));
        assert!(
            parse_publish("published=80,target=8080,proxy-protocol=v2")
                .expect("proxy")
                .proxy_protocol
        );
        assert_eq!(short.display(), "*:8080->80/tcp");
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        for (text, reason) in [
            ("0:80", "outside 1-65535"),
            ("8080:65536", "outside 1-65535"),
            ("8080", "expected PUBLISHED:TARGET"),
            ("8080:80/sctp", "not tcp or udp"),
            ("x:80", "not a number"),
            ("published=8080", "target= is missing"),
            ("target=80", "published= is missing"),
            (
                "published=8080,target=80,mode=global",
                "not ingress or host",
            ),
            ("published=8080,target=80,color=red", "unknown field"),
            (
                "published=8080,target=80,protocol=udp,proxy-protocol=v2",
                "only for tcp",
            ),
        ] {
            let error = parse_publish(text).expect_err(text).to_string();
            assert!(error.contains(reason), "{text}: {error}");
            assert!(error.contains("--publish"), "{text}: {error}");
        }
    }

    #[test]
    fn a_port_twice_in_one_service_is_refused() {
        let a = parse_publish("8080:80").expect("a");
        let b = parse_publish("8080:81").expect("b");
        let udp = parse_publish("8080:80/udp").expect("udp");
        assert!(validate_ports(&[a, udp]).is_ok());
        assert!(validate_ports(&[a, b]).is_err());
    }
}
