//! The PROXY protocol version 2 header (haproxy's spec, section 2.2): the binary preamble the
//! mesh sends a backend before the client's bytes when a port is published with
//! `proxy-protocol=v2`, so the task sees the client's address (SPEC §8).

use std::net::SocketAddr;

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// Version 2, command PROXY.
const VERSION_PROXY: u8 = 0x21;
/// AF_INET + STREAM.
const TCP_IPV4: u8 = 0x11;
/// AF_INET6 + STREAM.
const TCP_IPV6: u8 = 0x21;

/// The header for a TCP connection from `client` that arrived at `local`. Mixed families
/// (an IPv4 client on an IPv6 listener) are sent as IPv6 with mapped addresses.
pub fn header(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let mut bytes = SIGNATURE.to_vec();
    bytes.push(VERSION_PROXY);
    match (client, local) {
        (SocketAddr::V4(client), SocketAddr::V4(local)) => {
            bytes.push(TCP_IPV4);
            bytes.extend_from_slice(&12u16.to_be_bytes());
            bytes.extend_from_slice(&client.ip().octets());
            bytes.extend_from_slice(&local.ip().octets());
            bytes.extend_from_slice(&client.port().to_be_bytes());
            bytes.extend_from_slice(&local.port().to_be_bytes());
        }
        (client, local) => {
            let v6 = |addr: SocketAddr| match addr {
                SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped().octets(),
                SocketAddr::V6(v6) => v6.ip().octets(),
            };
            bytes.push(TCP_IPV6);
            bytes.extend_from_slice(&36u16.to_be_bytes());
            bytes.extend_from_slice(&v6(client));
            bytes.extend_from_slice(&v6(local));
            bytes.extend_from_slice(&client.port().to_be_bytes());
            bytes.extend_from_slice(&local.port().to_be_bytes());
        }
    }
    bytes
}

/// Parses a v2 header at the start of `bytes`: the client's address and the header length,
/// or `None` if `bytes` does not start with a complete TCP-over-IPv4/IPv6 header. (The
/// mesh only writes headers; tests and tools read them back with this.)
pub fn parse(bytes: &[u8]) -> Option<(SocketAddr, usize)> {
    if bytes.len() < 16 || bytes[..12] != SIGNATURE || bytes[12] != VERSION_PROXY {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let body = bytes.get(16..16 + length)?;
    let client = match bytes[13] {
        TCP_IPV4 if length >= 12 => {
            let ip = std::net::Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            SocketAddr::from((ip, u16::from_be_bytes([body[8], body[9]])))
        }
        TCP_IPV6 if length >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let ip = std::net::Ipv6Addr::from(octets);
            SocketAddr::from((ip, u16::from_be_bytes([body[32], body[33]])))
        }
        _ => return None,
    };
    Some((client, 16 + length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_has_the_spec_layout_and_parses_back() {
        let client: SocketAddr = "127.0.0.9:51000".parse().expect("addr");
        let local: SocketAddr = "127.0.0.1:8080".parse().expect("addr");
        let bytes = header(client, local);
        assert_eq!(bytes.len(), 28);
        assert_eq!(&bytes[..12], &SIGNATURE);
        assert_eq!(bytes[12], 0x21);
        assert_eq!(bytes[13], 0x11);
        assert_eq!(&bytes[14..16], &[0, 12]);
        assert_eq!(&bytes[16..20], &[127, 0, 0, 9]);
        assert_eq!(&bytes[24..26], &51000u16.to_be_bytes());
        assert_eq!(parse(&bytes), Some((client, 28)));
        assert_eq!(parse(&bytes[..20]), None, "cut short");
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), None);
    }

    #[test]
    fn ipv6_header_parses_back() {
        let client: SocketAddr = "[::1]:4000".parse().expect("addr");
        let local: SocketAddr = "[::1]:80".parse().expect("addr");
        let bytes = header(client, local);
        assert_eq!(bytes.len(), 52);
        assert_eq!(parse(&bytes), Some((client, 52)));
    }
}
