//! The expiry rules and the renewal advice, at injected times: no clock is read.

use std::path::PathBuf;

use rustls::RootCertStore;

use super::*;
use crate::config::{PinnedCerts, Trust};
use crate::tls::Anchors;
use crate::x509::CertSummary;

/// The committed test PKI, read here rather than through the dev master's fixtures,
/// which sit in a layer above this module.
mod fixtures {
    use std::path::{Path, PathBuf};

    use rustls_pki_types::CertificateDer;

    pub fn path(name: &str) -> PathBuf {
        Path::new("fixtures/pki").join(name)
    }

    pub fn certs(name: &str) -> Vec<CertificateDer<'static>> {
        let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(path(name))).unwrap();
        crate::pem::parse_certs(&bytes, &path(name)).unwrap()
    }
}

/// The Let's Encrypt stand-in leaf ends 2030-03-31T23:59:59Z.
const LE_NOT_AFTER: i64 = 1_901_231_999;

fn le_leaf(source: CertSource) -> ReliedOn {
    ReliedOn::from_der(Role::Master, &fixtures::certs("letsencrypt/cert.pem")[0], source).unwrap()
}

fn before_end(days: i64, extra_secs: i64) -> Timestamp {
    Timestamp(LE_NOT_AFTER - days * DAY - extra_secs)
}

#[test]
fn the_fixture_ends_when_the_tests_say() {
    assert_eq!(le_leaf(CertSource::Presented).not_after, Some(Timestamp(LE_NOT_AFTER)));
    assert_eq!(Timestamp(LE_NOT_AFTER).to_string(), "2030-03-31T23:59:59Z");
}

#[test]
fn warning_within_30_days_error_within_7_and_expired() {
    let leaf = le_leaf(CertSource::Presented);
    let w = Windows::default();
    for (now, level, days, text) in [
        (before_end(42, 0), Level::Ok, 42, "expires in 42 days (2030-03-31T23:59:59Z)"),
        (before_end(30, 1), Level::Ok, 30, "expires in 30 days (2030-03-31T23:59:59Z)"),
        (before_end(30, 0), Level::Warning, 30, "expires in 30 days (2030-03-31T23:59:59Z)"),
        (before_end(29, 0), Level::Warning, 29, "expires in 29 days (2030-03-31T23:59:59Z)"),
        (before_end(7, 1), Level::Warning, 7, "expires in 7 days (2030-03-31T23:59:59Z)"),
        (before_end(7, 0), Level::Error, 7, "expires in 7 days (2030-03-31T23:59:59Z)"),
        (before_end(6, 0), Level::Error, 6, "expires in 6 days (2030-03-31T23:59:59Z)"),
        (before_end(1, 0), Level::Error, 1, "expires in 1 day (2030-03-31T23:59:59Z)"),
        (before_end(0, 0), Level::Error, 0, "expires in less than a day (2030-03-31T23:59:59Z)"),
        (before_end(0, -3600), Level::Error, -1, "EXPIRED less than a day ago (2030-03-31T23:59:59Z)"),
        (before_end(-3, 0), Level::Error, -3, "EXPIRED 3 days ago (2030-03-31T23:59:59Z)"),
        (before_end(-3, -60), Level::Error, -4, "EXPIRED 3 days ago (2030-03-31T23:59:59Z)"),
    ] {
        let s = status(&leaf, now, w);
        assert_eq!((s.level, s.days_left, s.expiry_text().as_str()), (level, Some(days), text), "at {now}");
        assert_eq!(s.message.is_some(), level != Level::Ok, "at {now}");
    }
}

#[test]
fn the_windows_are_configurable() {
    let leaf = le_leaf(CertSource::Presented);
    let w = Windows { warn_days: 60, error_days: 14 };
    assert_eq!(status(&leaf, before_end(59, 0), w).level, Level::Warning);
    assert_eq!(status(&leaf, before_end(13, 0), w).level, Level::Error);
    assert_eq!(status(&leaf, before_end(61, 0), w).level, Level::Ok);
}

#[test]
fn the_message_names_the_certificate_its_role_source_end_days_and_fix() {
    let s = status(&le_leaf(CertSource::Presented), before_end(29, 0), Windows::default());
    assert_eq!(
        s.message.as_deref().unwrap(),
        "master certificate CN=master.example.com (presented by the master) expires in 29 days, on 2030-03-31T23:59:59Z: renew the master's certificate and have the master serve the new one (where certbot or another ACME client renews it, check that renewal runs and that the master reloads the certificate)"
    );
    let pinned = le_leaf(CertSource::File(PathBuf::from("/etc/determined/master.crt")));
    let message = status(&pinned, before_end(6, 0), Windows::default()).message.unwrap();
    assert!(message.starts_with("master certificate CN=master.example.com (from /etc/determined/master.crt) expires in 6 days, on 2030-03-31T23:59:59Z: renew the master's certificate, then put the new one in /etc/determined/master.crt (security.tls.master_cert) on every agent"), "{message}");
    let stored = le_leaf(CertSource::TrustStore { path: "/s/certs.json".into(), url: "https://m:8443".into() });
    let message = status(&stored, before_end(-2, 0), Windows::default()).message.unwrap();
    assert!(message.contains("(trusted on first use for https://m:8443, stored in /s/certs.json) EXPIRED 2 days ago"));
    assert!(message.ends_with("accept the new one on every agent with `det-agent trust https://m:8443`"), "{message}");
}

#[test]
fn each_role_and_source_gets_its_own_fix() {
    let der = &fixtures::certs("letsencrypt/test-r10.pem")[0];
    let at = |role, source| {
        let cert = ReliedOn::from_der(role, der, source).unwrap();
        let end = cert.not_after.unwrap();
        status(&cert, Timestamp(end.0 - DAY), Windows::default()).message.unwrap()
    };
    let file = || CertSource::File("/etc/ca.pem".into());
    assert!(
        at(Role::Intermediate, CertSource::Presented).contains("the master must serve its CA's current intermediate")
    );
    assert!(at(Role::Anchor, file()).contains("replace the CA certificate in /etc/ca.pem (security.tls.master_cert)"));
    assert!(at(Role::Anchor, CertSource::HostStore("SSL_CERT_FILE=/x".into()))
        .contains("this host's trust store (SSL_CERT_FILE=/x)"));
    assert!(
        at(Role::Anchor, CertSource::PresentedPinnedKey).contains("add that key's pin to security.tls.master_key_pins")
    );
    assert!(at(Role::Client, file()).starts_with("client certificate O=Let's Encrypt"));
    assert!(at(Role::Client, file()).contains("renew the client certificate"));
}

#[test]
fn a_bundled_root_or_an_unenforced_date_is_never_flagged() {
    let bundled = ReliedOn {
        role: Role::Anchor,
        subject: "CN=ISRG Root X1".into(),
        not_before: None,
        not_after: None,
        sha256: None,
        source: CertSource::Bundled,
        dates_checked: true,
    };
    let s = status(&bundled, before_end(0, 0), Windows::default());
    assert_eq!((s.level, s.days_left, s.message.as_deref()), (Level::Ok, None, None));
    assert!(s.expiry_text().starts_with("no expiry date known (the bundled roots carry only a name and a key"));
    let key_pinned = ReliedOn { dates_checked: false, ..le_leaf(CertSource::Presented) };
    let s = status(&key_pinned, before_end(-1, 0), Windows::default());
    assert_eq!((s.level, s.days_left), (Level::Ok, Some(-1)));
    assert!(s.expiry_text().contains("not enforced"), "{}", s.expiry_text());
}

#[test]
fn reminders_come_at_most_once_a_day() {
    let t = Timestamp(1_900_000_000);
    assert!(reminder_due(None, t));
    assert!(!reminder_due(Some(t), t));
    assert!(!reminder_due(Some(t), Timestamp(t.0 + DAY - 1)));
    assert!(reminder_due(Some(t), Timestamp(t.0 + DAY)));
    // A clock set back does not flood the log.
    assert!(!reminder_due(Some(t), Timestamp(t.0 - 5 * DAY)));
}

#[test]
fn the_watch_reminds_daily_and_at_once_on_escalation() {
    let mut watch = Watch::new(Windows::default(), None);
    let relied = [le_leaf(CertSource::Presented)];
    watch.relied_on(&relied);
    assert!(watch.due(before_end(31, 0)).is_empty(), "outside the windows");
    let first = watch.due(before_end(29, 0));
    assert_eq!(first.iter().map(|s| s.level).collect::<Vec<_>>(), [Level::Warning]);
    assert!(watch.due(before_end(29, -3600)).is_empty(), "an hour later: already reminded today");
    watch.relied_on(&relied); // a reconnect to the same master
    assert!(watch.due(before_end(28, 1)).is_empty(), "still within the day");
    assert_eq!(watch.due(before_end(28, 0)).len(), 1, "a day later");
    assert_eq!(watch.due(before_end(7, 3600))[0].level, Level::Warning, "a day later, still a warning");
    assert_eq!(watch.due(before_end(7, 0))[0].level, Level::Error, "an hour later, the error window: at once");
    assert!(watch.due(before_end(6, 1)).is_empty());
    assert_eq!(watch.due(before_end(6, 0))[0].level, Level::Error);
    assert_eq!(watch.earliest_not_after(), Some(Timestamp(LE_NOT_AFTER)));
    // The master now serves its renewed certificate: nothing to say.
    watch.relied_on(&[ReliedOn::from_der(
        Role::Master,
        &fixtures::certs("letsencrypt/renewed-same-key/cert.pem")[0],
        CertSource::Presented,
    )
    .unwrap()]);
    assert!(watch.due(before_end(5, 0)).is_empty());
}

#[test]
fn the_watch_includes_the_client_certificate() {
    let identity = crate::config::ClientIdentity::load(&fixtures::path("client.pem"), &fixtures::path("client.key"))
        .expect("the fixture client identity loads");
    let watch = Watch::new(Windows::default(), Some(&identity));
    let client = client_certificate(&identity).unwrap();
    assert_eq!(client.role, Role::Client);
    assert_eq!(client.source, CertSource::File(fixtures::path("client.pem")));
    let end = client.not_after.unwrap();
    let statuses = watch.statuses(Timestamp(end.0 - 3 * DAY));
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].level, Level::Error);
    let message = statuses[0].message.as_deref().unwrap();
    assert!(message.starts_with("client certificate O=det-agent tests, CN=det-agent node-1 (from fixtures/pki/client.pem) expires in 3 days, on 2124-01-01T00:00:00Z: renew the client certificate"), "{message}");
}

fn test_public_roots() -> Anchors {
    let mut roots = RootCertStore::empty();
    roots.add(fixtures::certs("letsencrypt/test-isrg-root-x1.pem").remove(0)).unwrap();
    Anchors::unlimited(roots)
}

fn pinned_file(file: &str) -> Trust {
    Trust::Pinned(PinnedCerts { path: fixtures::path(file), certs: fixtures::certs(file), store_entry: None })
}

#[test]
fn a_pinned_public_leaf_gets_the_renewal_advice() {
    let roots = test_public_roots();
    let presented = fixtures::certs("letsencrypt/fullchain.pem");
    // cert.pem alone: the master's chain shows who issued it.
    let advice = renewal_advice(&pinned_file("letsencrypt/cert.pem"), &presented, &roots).expect("advice");
    assert_eq!(advice.pinned_in, PinnedIn::File(fixtures::path("letsencrypt/cert.pem")));
    assert_eq!(advice.issuer.raw(), "O=Let's Encrypt (det-agent test stand-in), CN=R10 (test)");
    assert_eq!(
        advice.root.raw(),
        "O=Internet Security Research Group (det-agent test stand-in), CN=ISRG Root X1 (test)"
    );
    let text = advice.to_string();
    let pin = CertSummary::parse(&presented[0]).unwrap().key_pin;
    for part in [
        "security.tls.master_cert (fixtures/pki/letsencrypt/cert.pem) pins the master's own certificate, CN=master.example.com (valid until 2030-03-31T23:59:59Z), which a public CA issued",
        "Let's Encrypt's live 90 days",
        "this pin breaks at the master's next renewal",
        "Use CA mode instead: remove security.tls.master_cert",
        "set security.tls.master_cert_name to a name it carries (e.g. master.example.com)",
        &format!("CA mode with security.tls.master_key_pins [{pin}], and renew with certbot's --reuse-key"),
    ] {
        assert!(text.contains(part), "{part}\n in {text}");
    }
    // Without the master's chain, cert.pem alone cannot say; fullchain.pem can.
    assert!(renewal_advice(&pinned_file("letsencrypt/cert.pem"), &[], &roots).is_none());
    assert!(renewal_advice(&pinned_file("letsencrypt/fullchain.pem"), &[], &roots).is_some());
}

#[test]
fn a_first_use_entry_is_advised_to_forget_it() {
    let trust = Trust::Pinned(PinnedCerts {
        path: PathBuf::from("/home/u/.config/determined/certs.json"),
        certs: fixtures::certs("letsencrypt/fullchain.pem"),
        store_entry: Some("https://master.example.com:8443".to_owned()),
    });
    let text = renewal_advice(&trust, &[], &test_public_roots()).expect("advice").to_string();
    assert!(text.starts_with("the master certificate trusted on first use for https://master.example.com:8443 (stored in /home/u/.config/determined/certs.json) is the master's own certificate, CN=master.example.com"), "{text}");
    assert!(text.contains("run `det-agent trust --forget https://master.example.com:8443`"), "{text}");
}

#[test]
fn no_advice_for_a_pinned_ca_a_private_leaf_ca_mode_or_other_roots() {
    let roots = test_public_roots();
    let presented = fixtures::certs("letsencrypt/fullchain.pem");
    for file in ["letsencrypt/test-r10.pem", "letsencrypt/test-isrg-root-x1.pem", "letsencrypt/chain.pem"] {
        assert!(renewal_advice(&pinned_file(file), &presented, &roots).is_none(), "{file}: a CA, not the leaf");
    }
    let private = fixtures::certs("master.pem");
    assert!(renewal_advice(&pinned_file("master.pem"), &private, &roots).is_none(), "a private CA's leaf");
    assert!(renewal_advice(&pinned_file("self-signed-leaf.pem"), &[], &roots).is_none());
    assert!(renewal_advice(&Trust::PublicRoots, &presented, &roots).is_none());
    assert!(renewal_advice(&Trust::SkipVerify, &presented, &roots).is_none());
    // The test root is not one of the real bundled roots.
    assert!(renewal_advice(&pinned_file("letsencrypt/fullchain.pem"), &[], &Anchors::bundled()).is_none());
}

#[test]
fn text_from_the_certificate_is_shown_escaped() {
    let hostile = ReliedOn { subject: "CN=\x1b[2Jverdict OK\u{202e}".into(), ..le_leaf(CertSource::Presented) };
    let s = status(&hostile, before_end(3, 0), Windows::default());
    for text in [s.message.clone().unwrap(), s.to_string()] {
        assert!(text.contains("CN=\\x1b[2Jverdict OK\\u202e"), "{text}");
        assert!(!text.contains('\x1b') && !text.contains('\u{202e}'), "{text}");
    }
}
