use super::*;
use std::net::IpAddr;
use url::Url;

fn class(ip: &str) -> Option<AddressClass> {
    classify(ip.parse::<IpAddr>().expect("an address"))
}

#[test]
fn metadata_addresses_are_named_as_such() {
    for ip in [
        "169.254.169.254",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "100.100.100.200",
    ] {
        assert_eq!(class(ip), Some(AddressClass::Metadata), "{ip}");
    }
}

#[test]
fn non_public_ipv4_is_classified() {
    use AddressClass::*;
    let cases = [
        ("127.0.0.1", Loopback),
        ("127.255.0.9", Loopback),
        ("0.0.0.0", Unspecified),
        ("0.1.2.3", Unspecified),
        ("169.254.1.1", LinkLocal),
        ("10.0.0.1", Private),
        ("172.16.0.1", Private),
        ("172.31.255.255", Private),
        ("192.168.1.10", Private),
        ("100.64.0.1", SharedCgnat),
        ("100.127.255.254", SharedCgnat),
        ("224.0.0.251", Multicast),
        ("239.255.255.250", Multicast),
        ("255.255.255.255", Broadcast),
        ("240.0.0.1", Reserved),
        ("198.18.0.1", Reserved),
        ("192.0.0.8", Reserved),
        ("192.0.2.1", Documentation),
        ("198.51.100.7", Documentation),
        ("203.0.113.9", Documentation),
    ];
    for (ip, want) in cases {
        assert_eq!(class(ip), Some(want), "{ip}");
    }
}

#[test]
fn non_public_ipv6_is_classified() {
    use AddressClass::*;
    let cases = [
        ("::1", Loopback),
        ("::", Unspecified),
        ("fe80::1", LinkLocal),
        ("febf::1", LinkLocal),
        ("fc00::1", Private),
        ("fd12:3456::1", Private),
        ("fec0::1", Private),
        ("ff02::1", Multicast),
        ("2001:db8::1", Documentation),
        ("100::1", Reserved),
    ];
    for (ip, want) in cases {
        assert_eq!(class(ip), Some(want), "{ip}");
    }
}

#[test]
fn ipv6_forms_carrying_a_denied_ipv4_are_denied() {
    use AddressClass::*;
    let cases = [
        ("::ffff:10.0.0.1", Private),
        ("::ffff:127.0.0.1", Loopback),
        ("::ffff:7f00:1", Loopback),
        ("::127.0.0.1", Loopback),
        ("::ffff:0:10.1.2.3", Private),
        ("64:ff9b::169.254.169.254", Metadata),
        ("64:ff9b::a00:1", Private),
        ("2002:7f00:1::", Loopback),
        ("2002:c0a8:101::1", Private),
    ];
    for (ip, want) in cases {
        assert_eq!(class(ip), Some(want), "{ip}");
    }
}

#[test]
fn public_addresses_pass() {
    for ip in [
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "100.128.0.1",
        "169.255.0.1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ] {
        assert_eq!(class(ip), None, "{ip}");
    }
}

fn entry(s: &str) -> Result<AllowEntry, BadEntry> {
    s.parse()
}

#[test]
fn allow_entries_parse_hosts_ports_and_networks() {
    let cases = [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("[::1]:8080", "[::1]:8080"),
        ("sim.internal", "sim.internal"),
        ("Sim.Internal.:9000", "sim.internal:9000"),
        ("10.1.0.0/16", "10.1.0.0/16"),
        ("fd00::/8", "fd00::/8"),
        ("10.0.0.5", "10.0.0.5"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("127.1:80", "127.0.0.1:80"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
    ];
    for (raw, shown) in cases {
        let e = entry(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(e.to_string(), shown, "{raw}");
    }
}

#[test]
fn bad_allow_entries_say_why() {
    let cases = [
        ("", "empty"),
        ("http://sim.internal", "URL"),
        ("*.internal", "wildcard"),
        ("10.0.0.0/33", "CIDR"),
        ("10.1.2.3/16", "10.1.0.0/16"),
        ("sim.internal:0", "port"),
        ("sim.internal:http", "port"),
        ("127.0.0.1:70000", "port"),
        ("bad host", "host"),
    ];
    for (raw, why) in cases {
        let e = entry(raw).expect_err(raw).to_string();
        assert!(e.contains(why), "{raw}: {e}");
    }
}

#[test]
fn a_bad_entry_fails_the_settings_naming_the_key_and_the_entry() {
    let t =
        crate::config::testing::TestSettings::new().set("egress.allow", "10.0.0.0/8,10.1.2.3/16");
    let e = t.try_settings().expect_err("a bad entry").to_string();
    assert!(
        e.contains("egress.allow") && e.contains("10.1.2.3/16"),
        "{e}"
    );
    let t = crate::config::testing::TestSettings::new()
        .set("egress.allow", "127.0.0.1:8080,sim.internal");
    let allow = t.try_settings().expect("valid entries").egress.allow;
    assert_eq!(
        allow,
        vec![
            entry("127.0.0.1:8080").unwrap(),
            entry("sim.internal").unwrap()
        ]
    );
}

fn policy(allow: &[&str], origins: &[&str]) -> Policy {
    let allow: Vec<AllowEntry> = allow.iter().map(|a| entry(a).unwrap()).collect();
    let origins: Vec<Url> = origins.iter().map(|o| Url::parse(o).unwrap()).collect();
    Policy::new(&allow, &origins, true)
}

fn url_check(p: &Policy, url: &str) -> Result<(), Refused> {
    p.check_url(&Url::parse(url).unwrap())
}

#[test]
fn a_providers_origin_is_allowed_on_its_port_only() {
    let p = policy(&[], &["http://127.0.0.1:8080"]);
    assert_eq!(
        url_check(&p, "http://127.0.0.1:8080/sim/files/a.mp4"),
        Ok(())
    );
    let e = url_check(&p, "http://127.0.0.1:9000/secret").unwrap_err();
    assert_eq!(
        e.to_string(),
        "egress policy refused 127.0.0.1:9000 (loopback); allow it with egress.allow"
    );
    assert!(url_check(&p, "http://[::ffff:127.0.0.1]:9000/").is_err());
    assert_eq!(url_check(&p, "http://[::ffff:127.0.0.1]:8080/"), Ok(()));
}

#[test]
fn ip_literals_are_judged_in_every_spelling() {
    let p = policy(&[], &[]);
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://[::ffff:10.0.0.1]/",
        "http://0.0.0.0:80/",
    ] {
        assert!(
            matches!(url_check(&p, url), Err(Refused::Address { .. })),
            "{url}"
        );
    }
    assert_eq!(url_check(&p, "https://93.184.215.14/x.mp4"), Ok(()));
}

#[test]
fn networks_and_address_ports_from_the_allowlist() {
    let p = policy(&["10.1.0.0/16", "127.0.0.1:7000"], &[]);
    assert_eq!(url_check(&p, "http://10.1.2.3:1234/"), Ok(()));
    assert!(url_check(&p, "http://10.2.0.1/").is_err());
    assert_eq!(url_check(&p, "http://127.0.0.1:7000/"), Ok(()));
    assert!(url_check(&p, "http://127.0.0.1:7001/").is_err());
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(p.check_resolved("cdn.internal", ip("10.1.9.9")), Ok(()));
    // An address:port entry is for URLs naming that address, not for names resolving to it.
    let e = p.check_resolved("localhost", ip("127.0.0.1")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "egress policy refused localhost (resolves to 127.0.0.1, loopback); allow it with egress.allow"
    );
}

#[test]
fn names_are_judged_after_resolution_unless_allowed() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let p = policy(
        &["sim.internal", "localhost:7000"],
        &["https://api.example.com"],
    );
    assert_eq!(p.check_resolved("sim.internal", ip("10.0.0.7")), Ok(()));
    assert_eq!(p.check_resolved("SIM.internal.", ip("10.0.0.7")), Ok(()));
    assert_eq!(p.check_resolved("localhost", ip("::1")), Ok(()));
    assert_eq!(p.check_resolved("api.example.com", ip("10.0.0.8")), Ok(()));
    assert!(p
        .check_resolved("metadata.google.internal", ip("169.254.169.254"))
        .is_err());
    assert_eq!(
        p.check_resolved("cdn.example.net", ip("93.184.215.14")),
        Ok(())
    );
    // Before resolution: a name allowed on some ports only is refused on the others.
    assert_eq!(url_check(&p, "http://localhost:7000/"), Ok(()));
    let e = url_check(&p, "http://localhost:7001/").unwrap_err();
    assert!(matches!(e, Refused::Port { port: 7001, .. }), "{e}");
    assert!(url_check(&p, "http://api.example.com:8443/").is_err());
    assert_eq!(url_check(&p, "http://sim.internal:1/"), Ok(()));
    assert_eq!(url_check(&p, "https://cdn.example.net/a.mp4"), Ok(()));
}

#[test]
fn plain_http_and_other_schemes_follow_the_scheme_rule() {
    let strict = Policy::new(&[], &[], false);
    let e = url_check(&strict, "http://cdn.example.net/a.mp4").unwrap_err();
    assert!(e.to_string().contains("output.allow_http"), "{e}");
    assert_eq!(url_check(&strict, "https://cdn.example.net/a.mp4"), Ok(()));
    let lax = policy(&[], &[]);
    assert!(matches!(
        url_check(&lax, "file:///etc/passwd"),
        Err(Refused::Scheme(_))
    ));
    assert!(matches!(
        url_check(&lax, "ftp://cdn.example.net/a"),
        Err(Refused::Scheme(_))
    ));
}

#[test]
fn the_settings_policy_allows_every_providers_origin() {
    let mut s = crate::config::Settings::builtin();
    s.point_provider_at(
        crate::model::ProviderName::Fal,
        "http://127.0.0.1:4555",
        "k",
    );
    let p = Policy::from_settings(&s);
    // Built-in settings: https only.
    assert!(url_check(&p, "http://127.0.0.1:4555/").is_err());
    s.output.allow_http = true;
    let p = Policy::from_settings(&s);
    assert_eq!(url_check(&p, "http://127.0.0.1:4555/files/a.mp4"), Ok(()));
    assert!(url_check(&p, "http://127.0.0.1:4556/").is_err());
    assert_eq!(url_check(&p, "https://api.aimlapi.com/x"), Ok(()));
}

#[test]
fn a_scheme_switch_on_the_same_host_and_port_is_told_apart() {
    let u = |s: &str| Url::parse(s).unwrap();
    assert!(client::switches_scheme(
        &u("https://hub.example:8443/a"),
        &u("http://hub.example:8443/b")
    ));
    // Default ports differ, another host or port: reqwest drops credentials itself.
    assert!(!client::switches_scheme(
        &u("https://hub.example/a"),
        &u("http://hub.example/b")
    ));
    assert!(!client::switches_scheme(
        &u("https://hub.example/a"),
        &u("https://cdn.example/b")
    ));
    assert!(!client::switches_scheme(
        &u("http://hub.example:1/a"),
        &u("http://hub.example:1/b")
    ));
}

/// Over real HTTP: a key on a request to one origin is not carried across a redirect to
/// another host (reqwest's rule), and a redirect to the same host and port under another
/// scheme is refused before anything is sent.
#[tokio::test]
async fn credentials_never_cross_a_redirect_to_another_origin() {
    use axum::http::{header, HeaderMap, StatusCode};
    use std::sync::{Arc, Mutex};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let noted = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, h: HeaderMap| {
        let noted = noted.clone();
        async move {
            let keyed = h.contains_key(header::AUTHORIZATION);
            noted.lock().unwrap().push((uri.path().to_string(), keyed));
            let to = match uri.path() {
                "/other-host" => format!("http://localhost:{port}/landed"),
                "/same-host" => format!("http://127.0.0.1:{port}/landed"),
                "/other-scheme" => format!("https://127.0.0.1:{port}/landed"),
                _ => return (StatusCode::OK, [(header::LOCATION, String::new())]),
            };
            (StatusCode::FOUND, [(header::LOCATION, to)])
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let origin = format!("http://127.0.0.1:{port}");
    let p = policy(&["localhost"], &[&origin]);
    let egress = Egress::new(p, std::time::Duration::from_secs(5)).unwrap();
    let get = |path: &str| {
        let url = Url::parse(&format!("{origin}{path}")).unwrap();
        egress
            .get(&url)
            .unwrap()
            .header(reqwest::header::AUTHORIZATION, "Bearer sk-secret")
            .send()
    };
    assert_eq!(get("/other-host").await.unwrap().status(), 200);
    assert_eq!(get("/same-host").await.unwrap().status(), 200);
    let e = get("/other-scheme").await.unwrap_err();
    assert!(
        matches!(
            refusal(&e),
            Some(Refused::OnRedirect { refused, .. })
                if matches!(**refused, Refused::SchemeSwitch { .. })
        ),
        "{e:?}"
    );
    let seen = seen.lock().unwrap().clone();
    let want = [
        ("/other-host", true),
        ("/landed", false),
        ("/same-host", true),
        ("/landed", true),
        ("/other-scheme", true),
    ];
    let want: Vec<(String, bool)> = want.iter().map(|(p, k)| (p.to_string(), *k)).collect();
    assert_eq!(seen, want);
}
