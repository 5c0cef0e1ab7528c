//! Which provider endpoints a public gateway may reach: public addresses only, checked when the
//! list is filtered and again when a connection resolves its name.

#[allow(unused_imports)]
use super::*;

/// Whether `ip` is a public address: not loopback, private, link-local, shared (100.64/10),
/// documentation, benchmarking (198.18/15), IETF (192.0.0/24), reserved (240/4), multicast,
/// broadcast or unspecified; for IPv6 also not unique-local, site-local or link-local, and an
/// IPv4 address carried in IPv6 (mapped, compatible, 6to4, NAT64) is judged as that address.
pub(super) fn public_ip(ip: std::net::IpAddr) -> bool {
    use std::net::{IpAddr, Ipv4Addr};
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || (a == 192 && b == 0 && c == 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let o = v6.octets();
            let embedded = |x: &[u8]| IpAddr::V4(Ipv4Addr::new(x[0], x[1], x[2], x[3]));
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_ip(IpAddr::V4(v4));
            }
            // NAT64 (64:ff9b::/96) and IPv4-compatible (::/96, not :: or ::1).
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[..6] == [0; 6] && s[6] != 0) {
                return public_ip(embedded(&o[12..]));
            }
            // 6to4 (2002::/16) carries its IPv4 address in bits 16–48.
            if s[0] == 0x2002 {
                return public_ip(embedded(&o[2..6]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0)
        }
    }
}

/// Resolves names as ureq does, keeping public addresses only ([`public_ip`]). The addresses a
/// connection uses are the ones checked here, so a name that resolves to a public address when
/// the provider list is filtered and to a private one a moment later (DNS rebinding) still
/// cannot reach the machines around the gateway.
#[derive(Debug, Default)]
pub(super) struct PublicOnly(ureq::unversioned::resolver::DefaultResolver);

impl ureq::unversioned::resolver::Resolver for PublicOnly {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let all = self.0.resolve(uri, config, timeout)?;
        let mut public = self.empty();
        for addr in all.iter().filter(|a| public_ip(a.ip())) {
            public.push(*addr);
        }
        if public.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(public)
    }
}

/// Whether an `http(s)://host[:port]/…` endpoint may be public, without resolving it: an IP
/// literal must be public ([`public_ip`]); a name other than `localhost` passes, its addresses
/// being checked when a connection resolves it ([`PublicOnly`]). Cheap enough for every provider
/// on every request (no DNS lookup, which a slow name could stall).
pub(super) fn maybe_public_endpoint(endpoint: &str) -> bool {
    let Some((host, _)) = host_port(endpoint) else {
        return false;
    };
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => public_ip(ip),
        Err(_) => !host.is_empty() && !host.eq_ignore_ascii_case("localhost"),
    }
}

/// The host and port of an `http(s)://` URL (the scheme's port when none is given).
fn host_port(endpoint: &str) -> Option<(&str, u16)> {
    let (scheme, rest) = endpoint.split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok()?,
        None => default_port,
    };
    Some((host, port))
}

/// Whether an `http(s)://host[:port]/…` endpoint names only public addresses: an IP literal
/// that is not loopback, private, link-local, shared (100.64/10), documentation, multicast or
/// unspecified, or a name all of whose addresses are such. Unresolvable: not public.
pub fn public_endpoint(endpoint: &str) -> bool {
    use std::net::{IpAddr, ToSocketAddrs};
    let Some((host, port)) = host_port(endpoint) else {
        return false;
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return public_ip(ip);
    }
    if host.is_empty() || host.eq_ignore_ascii_case("localhost") {
        return false;
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| public_ip(a.ip()))
        }
        Err(_) => false,
    }
}
