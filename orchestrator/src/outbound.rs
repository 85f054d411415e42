//! The one guard for every request the server makes to a client-given URL (SSRF): reference
//! audio URLs fetched at admission ([`fetch`]) and webhook endpoints ([`crate::webhooks`]).
//! Every hop — the URL and, for fetches, each redirect — is checked the same way:
//!
//! * `http` or `https` only, no user name or password in the URL;
//! * the host is resolved once, and every address it resolves to must be public (not loopback,
//!   private, link-local including 169.254.169.254, unique-local, CGNAT, multicast,
//!   unspecified, documentation, benchmark or reserved; IPv4-mapped and NAT64 IPv6 addresses
//!   are judged by their IPv4 address) unless the configuration allow-lists it
//!   (`fetch.allow`, networks in CIDR form); numeric spellings (`127.1`, `2130706433`,
//!   `0x7f.1`) are normalised by the URL parser before the check, so they are judged as the
//!   address they name;
//! * the connection is pinned to the checked address, so a second DNS answer cannot swap it
//!   (DNS rebinding);
//! * at most [`FetchPolicy::max_redirects`] redirects, each re-checked (webhook deliveries
//!   follow none);
//! * one deadline for the whole request, and a fetched body is read in chunks up to the limit.
//!
//! `fetch.allow_private_addresses = true` lifts the address check altogether (a deployment on a
//! private network where every client is trusted); everything else still applies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Url;
use thiserror::Error;

use crate::config::FetchConfig;

/// How outbound requests are limited.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Every address allowed (`fetch.allow_private_addresses`).
    pub allow_private: bool,
    /// Internal networks allowed all the same (`fetch.allow`).
    pub allow: Vec<IpNet>,
    pub timeout: Duration,
    pub max_bytes: usize,
    pub max_redirects: usize,
}

impl FetchPolicy {
    /// The policy of `[fetch]`, reading at most `max_bytes`.
    pub fn from_config(config: &FetchConfig, max_bytes: usize) -> FetchPolicy {
        FetchPolicy {
            allow_private: config.allow_private_addresses,
            allow: config.allow.clone(),
            timeout: Duration::from_secs(config.timeout_seconds),
            max_bytes,
            max_redirects: config.max_redirects,
        }
    }

    /// Whether a connection to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow_private || is_public(ip) || self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (so `fetch.allow` in IPv4 form covers
/// it too).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[derive(Debug, Error)]
pub enum FetchError {
    /// Not a URL the server may call (scheme, credentials, address).
    #[error("{0}")]
    Refused(String),
    /// The request itself failed (connection, status, timeout).
    #[error("{0}")]
    Failed(String),
    /// The body is larger than `max_bytes`.
    #[error("the audio at the URL is larger than the limit of {0} bytes")]
    TooLarge(usize),
}

/// A client that connects `url`'s host only to `addr` (checked by [`check`]) and follows no
/// redirect.
pub fn pinned_client(
    url: &Url,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<reqwest::Client, FetchError> {
    let host = url.host_str().unwrap_or_default().to_string();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, addr)
        .timeout(timeout)
        .user_agent(concat!("refrain/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Failed(format!("cannot build an HTTP client ({e})")))
}

/// The fetched bytes and a decoder hint (file extension) from the content type or the path.
pub async fn fetch(
    raw: &str,
    policy: &FetchPolicy,
) -> Result<(Vec<u8>, Option<String>), FetchError> {
    match tokio::time::timeout(policy.timeout, fetch_hops(raw, policy)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Failed(format!(
            "no complete answer within {} s",
            policy.timeout.as_secs()
        ))),
    }
}

async fn fetch_hops(
    raw: &str,
    policy: &FetchPolicy,
) -> Result<(Vec<u8>, Option<String>), FetchError> {
    let mut url = Url::parse(raw.trim())
        .map_err(|e| FetchError::Refused(format!("not a valid URL ({e})")))?;
    for _ in 0..=policy.max_redirects {
        let addr = check(&url, policy).await?;
        let client = pinned_client(&url, addr, policy.timeout)?;
        let mut response = client.get(url.clone()).send().await.map_err(|e| {
            FetchError::Failed(format!("cannot fetch the URL ({})", e.without_url()))
        })?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| FetchError::Failed(format!("{status} without a Location")))?;
            url = url
                .join(location)
                .map_err(|e| FetchError::Refused(format!("bad redirect target ({e})")))?;
            continue;
        }
        if !status.is_success() {
            return Err(FetchError::Failed(format!("the URL answered {status}")));
        }
        if response
            .content_length()
            .is_some_and(|n| n > policy.max_bytes as u64)
        {
            return Err(FetchError::TooLarge(policy.max_bytes));
        }
        let hint = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(hint_from_content_type)
            .or_else(|| hint_from_path(url.path()));
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            FetchError::Failed(format!("the download broke off ({})", e.without_url()))
        })? {
            if bytes.len() + chunk.len() > policy.max_bytes {
                return Err(FetchError::TooLarge(policy.max_bytes));
            }
            bytes.extend_from_slice(&chunk);
        }
        return Ok((bytes, hint));
    }
    Err(FetchError::Failed(format!(
        "more than {} redirects",
        policy.max_redirects
    )))
}

/// Parses `raw` as a URL the server may call and checks it ([`check`]); returns the URL and
/// the address to connect to.
pub async fn check_raw(raw: &str, policy: &FetchPolicy) -> Result<(Url, SocketAddr), FetchError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| FetchError::Refused(format!("not a valid URL ({e})")))?;
    let addr = check(&url, policy).await?;
    Ok((url, addr))
}

/// Checks one hop and returns the address to connect to.
pub async fn check(url: &Url, policy: &FetchPolicy) -> Result<SocketAddr, FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::Refused(format!(
            "only http and https URLs are fetched, not {}:",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::Refused(
            "URLs with a user name or password are not fetched".into(),
        ));
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match url.host() {
        None => return Err(FetchError::Refused("the URL has no host".into())),
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| FetchError::Failed(format!("cannot resolve {name} ({e})")))?
            .collect(),
    };
    let Some(first) = addrs.first().copied() else {
        return Err(FetchError::Failed("the host has no address".into()));
    };
    if let Some(bad) = addrs.iter().find(|a| !policy.allows(a.ip())) {
        return Err(FetchError::Refused(format!(
            "the URL's host is not a public address ({}); the server does not call internal \
             networks",
            bad.ip()
        )));
    }
    Ok(first)
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                // NAT64 (64:ff9b::/96): judged by the IPv4 address it carries.
                let o = v6.octets();
                return is_public_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || v6.segments()[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible (deprecated) and ::
                || v6 == Ipv6Addr::UNSPECIFIED)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

/// A decoder hint from a `Content-Type`.
pub fn hint_from_content_type(content_type: &str) -> Option<String> {
    let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let ext = match essence.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "wav",
        "audio/mpeg" | "audio/mp3" | "audio/mpeg3" | "audio/x-mpeg-3" => "mp3",
        "audio/flac" | "audio/x-flac" => "flac",
        "audio/ogg" | "application/ogg" | "audio/opus" => "ogg",
        _ => return None,
    };
    Some(ext.to_string())
}

/// A decoder hint from a file name or URL path: its extension, lower-cased, alphanumeric.
pub fn hint_from_path(path: &str) -> Option<String> {
    let name = path.rsplit('/').next()?;
    let (_, ext) = name.rsplit_once('.')?;
    let ext: String = ext
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (!ext.is_empty() && ext.len() <= 8).then_some(ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_not_public() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "64:ff9b::101:101",
        ] {
            assert!(is_public(good.parse().unwrap()), "{good}");
        }
    }

    fn policy(allow_private: bool) -> FetchPolicy {
        FetchPolicy {
            allow_private,
            allow: Vec::new(),
            timeout: Duration::from_secs(10),
            max_bytes: 1000,
            max_redirects: 2,
        }
    }

    #[tokio::test]
    async fn refuses_before_connecting() {
        // None of these is connected to: each is refused by the checks.
        for url in [
            "ftp://127.0.0.1/a.wav",
            "file:///etc/passwd",
            "http://user:pw@127.0.0.1/a.wav",
            "http://127.0.0.1:9/a.wav",
            "http://[::1]:9/a.wav",
            "http://10.0.0.1/a.wav",
            "http://localhost:9/a.wav",
            "http://127.1:9/a.wav",
            "http://2130706433:9/a.wav",
            "http://0x7f.1:9/a.wav",
            "http://017700000001:9/a.wav",
            "http://[::ffff:127.0.0.1]:9/a.wav",
            "http://[::ffff:7f00:1]:9/a.wav",
            "http://0.0.0.0:9/a.wav",
            "http://169.254.169.254/latest/meta-data/",
            "not a url",
        ] {
            let e = fetch(url, &policy(false)).await.unwrap_err();
            assert!(matches!(e, FetchError::Refused(_)), "{url}: {e}");
        }
    }

    /// A loopback server: `/a.wav` answers 10 bytes, `/big` 2000, `/r` redirects to `/a.wav`,
    /// `/loop` to itself.
    async fn server() -> String {
        use axum::response::Redirect;
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/a.wav",
                get(|| async { ([("content-type", "audio/wav")], vec![1u8; 10]) }),
            )
            .route("/big", get(|| async { vec![0u8; 2000] }))
            .route("/r", get(|| async { Redirect::temporary("/a.wav") }))
            .route("/loop", get(|| async { Redirect::temporary("/loop") }))
            .route("/gone", get(|| async { axum::http::StatusCode::NOT_FOUND }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn fetches_with_limits_when_private_addresses_are_allowed() {
        let base = server().await;
        let p = policy(true);
        let (bytes, hint) = fetch(&format!("{base}/a.wav"), &p).await.unwrap();
        assert_eq!((bytes.len(), hint.as_deref()), (10, Some("wav")));
        let (bytes, _) = fetch(&format!("{base}/r"), &p).await.unwrap();
        assert_eq!(bytes.len(), 10);
        assert!(matches!(
            fetch(&format!("{base}/big"), &p).await,
            Err(FetchError::TooLarge(1000))
        ));
        assert!(matches!(
            fetch(&format!("{base}/loop"), &p).await,
            Err(FetchError::Failed(_))
        ));
        assert!(matches!(
            fetch(&format!("{base}/gone"), &p).await,
            Err(FetchError::Failed(_))
        ));
        // The same server is refused when private addresses are not allowed.
        assert!(matches!(
            fetch(&format!("{base}/a.wav"), &policy(false)).await,
            Err(FetchError::Refused(_))
        ));
    }

    #[test]
    fn allow_listed_networks_only() {
        let mut p = policy(false);
        p.allow = vec!["127.0.0.2/32".parse().unwrap(), "fd00::/8".parse().unwrap()];
        assert!(p.allows("127.0.0.2".parse().unwrap()));
        assert!(p.allows("::ffff:127.0.0.2".parse().unwrap()));
        assert!(p.allows("fd12::1".parse().unwrap()));
        assert!(p.allows("1.1.1.1".parse().unwrap()));
        for refused in ["127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "fe80::1"] {
            assert!(!p.allows(refused.parse().unwrap()), "{refused}");
        }
    }

    /// A redirect from an allow-listed address to one that is not is refused at the second hop.
    #[tokio::test]
    async fn a_redirect_to_loopback_is_refused() {
        use axum::response::Redirect;
        use axum::routing::get;
        let target = server().await; // on 127.0.0.1, not allow-listed
        let app = axum::Router::new().route(
            "/r",
            get(move || async move { Redirect::temporary(&format!("{target}/a.wav")) }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut p = policy(false);
        p.allow = vec!["127.0.0.2/32".parse().unwrap()];
        let e = fetch(&format!("http://{addr}/r"), &p).await.unwrap_err();
        assert!(
            matches!(&e, FetchError::Refused(m) if m.contains("127.0.0.1")),
            "{e}"
        );
    }

    #[test]
    fn hints() {
        assert_eq!(
            hint_from_content_type("audio/mpeg; x=1").as_deref(),
            Some("mp3")
        );
        assert_eq!(hint_from_path("/x/Song.FLAC").as_deref(), Some("flac"));
        assert_eq!(hint_from_path("/x/song"), None);
    }
}
