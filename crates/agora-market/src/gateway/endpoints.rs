//! Which provider endpoints a public gateway may reach: public addresses only, checked when the
//! list is filtered and again when a connection resolves its name.

#[allow(unused_imports)]
use super::*;

/// Whether `ip` is a public address: not loopback, private, link-local, shared (100.64/10),
/// documentation, multicast, broadcast or unspecified (nor IPv4 mapped into IPv6).
pub(super) fn public_ip(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            let mapped = v6.to_ipv4_mapped();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || mapped.is_some())
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

/// Whether an `http(s)://host[:port]/…` endpoint names only public addresses: an IP literal
/// that is not loopback, private, link-local, shared (100.64/10), documentation, multicast or
/// unspecified, or a name all of whose addresses are such. Unresolvable: not public.
pub fn public_endpoint(endpoint: &str) -> bool {
    use std::net::{IpAddr, ToSocketAddrs};
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((host, after)) = v6.split_once(']') else {
            return false;
        };
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => return false,
        },
        None => default_port,
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
