//! Entry schema v1 (spec/entries.md): round trips, canonical bytes, every error class,
//! signatures, entry hashes, leaves and subject commitments.

use candor_core::entry::samples;
use candor_core::entry::*;
use candor_core::hash::{Hash, leaf_hash, sha256};
use candor_core::jcs;
use candor_core::subject::{Opening, Salt, SubjectId, commit, verify_opening};
use serde_json::{Value, json};

const CO: &str = "acme.example";

fn subject() -> Hash {
    samples::opening("alice@example.com", 1).commitment()
}

fn all_samples() -> Vec<Entry> {
    let key = samples::signing_key("acme").verifying_key();
    vec![
        samples::targeting_decision(CO, subject()),
        samples::targeting_decision_from_purchase(CO, subject(), 7, sha256(b"leaf 7")),
        samples::data_purchase(CO),
        samples::sensitive_data_purchase(CO),
        samples::company_key(CO, &key, KeyAction::Register),
        samples::company_key(CO, &key, KeyAction::Revoke),
        samples::load_targeting_decision(CO, 12345),
    ]
}

fn value(e: &Entry) -> Value {
    serde_json::to_value(e).unwrap()
}

/// Applies `f` to the sample's JSON and parses it, returning the error.
fn err_of(e: &Entry, f: impl FnOnce(&mut Value)) -> EntryError {
    let mut v = value(e);
    f(&mut v);
    Entry::parse_value(&v).expect_err("mutated entry must be rejected")
}

fn td() -> Entry {
    samples::targeting_decision(CO, subject())
}

fn td_purchase() -> Entry {
    samples::targeting_decision_from_purchase(CO, subject(), 7, sha256(b"leaf 7"))
}

fn dp() -> Entry {
    samples::data_purchase(CO)
}

fn ck() -> Entry {
    samples::company_key(
        CO,
        &samples::signing_key("acme").verifying_key(),
        KeyAction::Register,
    )
}

// ---- round trips and canonical bytes ----

#[test]
fn samples_are_valid_and_round_trip() {
    for e in all_samples() {
        e.validate()
            .unwrap_or_else(|err| panic!("{} invalid: {err}", e.kind()));
        let bytes = e.canonical_bytes().unwrap();
        let parsed = Entry::parse_json(&bytes).unwrap();
        assert_eq!(parsed, e);
        assert_eq!(parsed.canonical_bytes().unwrap(), bytes);
        // Pretty-printed input parses to the same entry and the same canonical bytes.
        let pretty = serde_json::to_vec_pretty(&value(&e)).unwrap();
        assert_eq!(
            Entry::parse_json(&pretty)
                .unwrap()
                .canonical_bytes()
                .unwrap(),
            bytes
        );
        // serde Deserialize goes through the same parser.
        let via_serde: Entry = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(via_serde, e);
    }
}

#[test]
fn canonical_bytes_are_sorted_compact_and_stable() {
    for e in all_samples() {
        let bytes = e.canonical_bytes().unwrap();
        assert!(jcs::is_canonical(&bytes));
        assert_eq!(bytes, e.canonical_bytes().unwrap());
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("{\""), "{text}");
        // Top-level members appear in sorted order (their names are unique in the text).
        let mut names: Vec<String> = value(&e).as_object().unwrap().keys().cloned().collect();
        names.sort();
        let pos: Vec<usize> = names
            .iter()
            .map(|k| text.find(&format!("\"{k}\":")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{text}");
        // No insignificant whitespace: the only spaces are inside string values.
        let mut stripped = value(&e);
        strip_strings(&mut stripped);
        let skeleton = String::from_utf8(jcs::canonicalize(&stripped).unwrap()).unwrap();
        assert!(
            !skeleton.contains(' ') && !skeleton.contains('\n'),
            "{skeleton}"
        );
    }
    // A pinned example: a company_key entry's exact bytes and entry hash (a fixed
    // date: canonical bytes do not depend on the clock).
    let sk = ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]);
    let e = Entry::CompanyKey(CompanyKey::new(
        "acme.example",
        KeyAction::Register,
        &sk.verifying_key(),
        "2026-11-01T00:00:00Z",
    ));
    let vkey = verifier_key_string("acme.example", &sk.verifying_key());
    assert_eq!(
        String::from_utf8(e.canonical_bytes().unwrap()).unwrap(),
        format!(
            "{{\"action\":\"register\",\"at\":\"2026-11-01T00:00:00Z\",\"company\":\"acme.example\",\
             \"kind\":\"company_key\",\"verifier_key\":\"{vkey}\"}}"
        )
    );
    let mut msg = b"candor-entry/v1\n".to_vec();
    msg.extend_from_slice(&e.canonical_bytes().unwrap());
    assert_eq!(e.signed_message().unwrap(), msg);
    assert_eq!(e.entry_hash().unwrap(), sha256(&msg));
}

fn strip_strings(v: &mut Value) {
    match v {
        Value::String(s) => s.clear(),
        Value::Array(a) => a.iter_mut().for_each(strip_strings),
        Value::Object(m) => m.values_mut().for_each(strip_strings),
        _ => {}
    }
}

#[test]
fn accessors() {
    let at = |days: i64| format_time(samples::sample_now() - time::Duration::days(days));
    let e = td();
    assert_eq!(
        (e.kind(), e.company(), e.time()),
        ("targeting_decision", CO, at(0).as_str())
    );
    let e = dp();
    assert_eq!((e.kind(), e.time()), ("data_purchase", at(7).as_str()));
    let e = ck();
    assert_eq!((e.kind(), e.time()), ("company_key", at(1).as_str()));
    let e = samples::dated(e, "2031-01-01T00:00:00Z");
    assert_eq!(e.time(), "2031-01-01T00:00:00Z");
}

// ---- error classes, each with the field path ----

#[test]
fn unknown_kind() {
    let e = err_of(&td(), |v| v["kind"] = json!("targeting_decisions"));
    assert_eq!(e, EntryError::UnknownKind("targeting_decisions".into()));
    assert!(e.to_string().contains("kind"));
    assert_eq!(
        err_of(&td(), |v| drop(v.as_object_mut().unwrap().remove("kind"))),
        EntryError::MissingField("kind".into())
    );
}

#[test]
fn missing_fields() {
    let cases: Vec<(Entry, &str, Vec<&str>)> = vec![
        (td(), "decided_at", vec!["decided_at"]),
        (td(), "subject", vec!["subject"]),
        (dp(), "consent_evidence", vec!["consent_evidence"]),
        (ck(), "verifier_key", vec!["verifier_key"]),
    ];
    for (e, name, _) in cases {
        assert_eq!(
            err_of(&e, |v| drop(v.as_object_mut().unwrap().remove(name))),
            EntryError::MissingField(name.into())
        );
    }
    let e = err_of(&td(), |v| {
        drop(v["campaign"].as_object_mut().unwrap().remove("purpose"))
    });
    assert_eq!(e, EntryError::MissingField("campaign.purpose".into()));
    let e = err_of(&td(), |v| {
        drop(v["criteria"][1].as_object_mut().unwrap().remove("rule"))
    });
    assert_eq!(e, EntryError::MissingField("criteria[1].rule".into()));
    assert_eq!(e.to_string(), "criteria[1].rule: missing field");
    let e = err_of(&dp(), |v| {
        drop(v["seller"].as_object_mut().unwrap().remove("domain"))
    });
    assert_eq!(e, EntryError::MissingField("seller.domain".into()));
}

#[test]
fn bad_enums() {
    let e = err_of(&td(), |v| v["criteria"][2]["effect"] = json!("maybe"));
    match &e {
        EntryError::BadEnum {
            field,
            value,
            allowed,
        } => {
            assert_eq!(field, "criteria[2].effect");
            assert_eq!(value, "maybe");
            assert_eq!(*allowed, &["include", "exclude"][..]);
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        e.to_string(),
        "criteria[2].effect: \"maybe\" is not allowed; allowed: include, exclude"
    );
    for (entry, path, mutate) in [
        (
            td(),
            "channel",
            Box::new(|v: &mut Value| v["channel"] = json!("EMAIL")) as Box<dyn Fn(&mut Value)>,
        ),
        (
            td(),
            "legal_basis",
            Box::new(|v: &mut Value| v["legal_basis"] = json!("art6")),
        ),
        (
            td(),
            "criteria[0].type",
            Box::new(|v: &mut Value| v["criteria"][0]["type"] = json!("psychographic")),
        ),
        (
            td(),
            "data_sources[0].type",
            Box::new(|v: &mut Value| v["data_sources"][0]["type"] = json!("scraped")),
        ),
        (
            dp(),
            "categories[1]",
            Box::new(|v: &mut Value| v["categories"][1] = json!("shoe_size")),
        ),
        (
            dp(),
            "purposes[0]",
            Box::new(|v: &mut Value| v["purposes"][0] = json!("anything")),
        ),
        (
            dp(),
            "collection_method",
            Box::new(|v: &mut Value| v["collection_method"] = json!("guessed")),
        ),
        (
            ck(),
            "action",
            Box::new(|v: &mut Value| v["action"] = json!("rotate")),
        ),
    ] {
        match err_of(&entry, mutate) {
            EntryError::BadEnum { field, .. } => assert_eq!(field, path),
            other => panic!("{path}: {other}"),
        }
    }
    // `sensitive` only takes Art. 9 categories.
    match err_of(&dp(), |v| v["sensitive"] = json!(["contact"])) {
        EntryError::BadEnum { field, allowed, .. } => {
            assert_eq!(field, "sensitive[0]");
            assert_eq!(allowed.len(), 8);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn bad_times() {
    for bad in [
        "2026-11-29T05:31:40.000Z",
        "2026-11-29T06:31:40+01:00",
        "2026-11-29",
        "1999-01-01T00:00:00Z",
    ] {
        let e = err_of(&td(), |v| v["decided_at"] = json!(bad));
        assert_eq!(
            e,
            EntryError::BadTime {
                field: "decided_at".into(),
                value: bad.into()
            }
        );
    }
    assert!(
        matches!(err_of(&dp(), |v| v["purchased_at"] = json!("yesterday")), EntryError::BadTime { field, .. } if field == "purchased_at")
    );
    assert!(
        matches!(err_of(&ck(), |v| v["at"] = json!("2026-02-30T00:00:00Z")), EntryError::BadTime { field, .. } if field == "at")
    );
}

#[test]
fn unknown_fields() {
    assert_eq!(
        err_of(&td(), |v| v["extra"] = json!(1)),
        EntryError::UnknownField("extra".into())
    );
    assert_eq!(
        err_of(&td(), |v| v["campaign"]["budget"] = json!("1M")),
        EntryError::UnknownField("campaign.budget".into())
    );
    assert_eq!(
        err_of(&dp(), |v| v["upstream"][0]["country"] = json!("NL")),
        EntryError::UnknownField("upstream[0].country".into())
    );
    // A field of another kind is unknown here.
    assert_eq!(
        err_of(&ck(), |v| v["subject"] = json!("00")),
        EntryError::UnknownField("subject".into())
    );
    // A misspelling is reported as the unknown name, not as the missing one.
    let e = err_of(&td(), |v| {
        let o = v.as_object_mut().unwrap();
        let x = o.remove("reason").unwrap();
        o.insert("reasons".into(), x);
    });
    assert_eq!(e, EntryError::UnknownField("reasons".into()));
}

#[test]
fn numbers_are_integers_only() {
    for bad in [
        json!(1.5),
        json!(250000.0),
        json!(-1),
        json!(0),
        json!(9007199254740992u64),
        json!("250000"),
    ] {
        let e = err_of(&dp(), |v| v["records"] = bad.clone());
        match e {
            EntryError::Invalid { ref field, .. } | EntryError::WrongType { ref field, .. } => {
                assert_eq!(field, "records", "{bad}")
            }
            other => panic!("{bad}: {other}"),
        }
    }
    let e = err_of(&td_purchase(), |v| {
        v["data_sources"][0]["purchase"]["index"] = json!(7.0)
    });
    assert!(
        e.to_string()
            .starts_with("data_sources[0].purchase.index: "),
        "{e}"
    );
    assert!(e.to_string().contains("not an integer"), "{e}");
    assert!(
        matches!(err_of(&dp(), |v| v["retention_days"] = json!(36501)), EntryError::Invalid { field, .. } if field == "retention_days")
    );
}

#[test]
fn bad_company_names() {
    for bad in [
        "Acme.example",
        "acme",
        "acme_corp.example",
        "-acme.example",
        "acme.example.",
        "10.0.0.1",
        "",
    ] {
        match err_of(&td(), |v| v["company"] = json!(bad)) {
            EntryError::Invalid { field, reason } => {
                assert_eq!(field, "company");
                assert!(reason.contains("DNS name"), "{reason}");
            }
            other => panic!("{bad}: {other}"),
        }
    }
    assert!(
        matches!(err_of(&dp(), |v| v["seller"]["domain"] = json!("List Co")), EntryError::Invalid { field, .. } if field == "seller.domain")
    );
    let long = format!("{}.example", vec!["a".repeat(63); 4].join("."));
    assert!(
        matches!(err_of(&ck(), |v| v["company"] = json!(long)), EntryError::Invalid { field, .. } if field == "company")
    );
}

#[test]
fn bad_verifier_keys() {
    let vk = samples::signing_key("acme").verifying_key();
    let good = verifier_key_string(CO, &vk);
    let other = verifier_key_string("other.example", &vk);
    let (name_id, b64) = good.rsplit_once('+').unwrap();
    let mut blob = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
    blob[0] = 0x04;
    let wrong_type = format!(
        "{name_id}+{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &blob)
    );
    let cases = [
        ("acme.example", "name differs (no '+' at all)"),
        (other.as_str(), "name differs"),
        (&good[..good.len() - 4], "truncated"),
        (wrong_type.as_str(), "cosignature key type"),
        (&good.replacen('+', "+0", 1)[..], "9-digit key id"),
    ];
    for (bad, why) in cases {
        match err_of(&ck(), |v| v["verifier_key"] = json!(bad)) {
            EntryError::Invalid { field, .. } => assert_eq!(field, "verifier_key", "{why}"),
            other => panic!("{why}: {other}"),
        }
    }
    // A key ID that does not match the key.
    let mut chars: Vec<char> = good.chars().collect();
    let pos = CO.len() + 1;
    chars[pos] = if chars[pos] == '0' { '1' } else { '0' };
    let wrong_id: String = chars.into_iter().collect();
    let e = err_of(&ck(), |v| v["verifier_key"] = json!(wrong_id));
    assert!(e.to_string().contains("does not match"), "{e}");
    // The key and ID are recoverable from a valid entry.
    let Entry::CompanyKey(k) = ck() else {
        unreachable!()
    };
    assert_eq!(k.key().unwrap(), (ed25519_key_id(CO, &vk), vk));
}

#[test]
fn purchase_sources_need_a_reference() {
    let e = err_of(&td_purchase(), |v| {
        drop(
            v["data_sources"][0]
                .as_object_mut()
                .unwrap()
                .remove("purchase"),
        )
    });
    assert!(
        matches!(&e, EntryError::Invalid { field, .. } if field == "data_sources[0].purchase"),
        "{e}"
    );
    assert!(e.to_string().contains("required when type is purchase"));
    let e = err_of(&td_purchase(), |v| {
        v["data_sources"][1]["purchase"] = json!({"index": 1, "leaf_hash": "00".repeat(32)})
    });
    assert!(
        matches!(&e, EntryError::Invalid { field, .. } if field == "data_sources[1].purchase"),
        "{e}"
    );
    let e = err_of(&td_purchase(), |v| {
        v["data_sources"][0]["purchase"]["leaf_hash"] = json!("AB".repeat(32))
    });
    assert!(
        matches!(&e, EntryError::Invalid { field, .. } if field == "data_sources[0].purchase.leaf_hash"),
        "{e}"
    );
}

#[test]
fn other_field_rules() {
    let inv = |e: EntryError| match e {
        EntryError::Invalid { field, .. } | EntryError::WrongType { field, .. } => field,
        other => panic!("{other}"),
    };
    assert_eq!(
        inv(err_of(&td(), |v| v["criteria"] = json!([]))),
        "criteria"
    );
    assert_eq!(
        inv(err_of(&td(), |v| v["data_sources"] = json!([]))),
        "data_sources"
    );
    assert_eq!(
        inv(err_of(&td(), |v| v["reason"] = json!("x".repeat(1001)))),
        "reason"
    );
    assert_eq!(inv(err_of(&td(), |v| v["reason"] = json!(""))), "reason");
    assert_eq!(
        inv(err_of(&td(), |v| v["campaign"]["name"] = json!("line\nbreak"))),
        "campaign.name"
    );
    assert_eq!(
        inv(err_of(&td(), |v| v["opt_out"] =
            json!("http://acme.example/opt-out"))),
        "opt_out"
    );
    assert_eq!(
        inv(err_of(&td(), |v| v["subject"] = json!("abc"))),
        "subject"
    );
    assert_eq!(
        inv(err_of(&td(), |v| v["consent_ref"] = Value::Null)),
        "consent_ref"
    );
    assert_eq!(
        inv(err_of(&td(), |v| v["legal_basis"] = json!("consent"))),
        "consent_ref"
    );
    assert_eq!(
        inv(err_of(&td(), |v| v["campaign"] = json!("winter"))),
        "campaign"
    );
    let many: Vec<Value> = (0..33)
        .map(|i| json!({"type": "geo", "rule": format!("r{i}"), "effect": "include"}))
        .collect();
    assert_eq!(
        inv(err_of(&td(), |v| v["criteria"] = json!(many))),
        "criteria"
    );
    // data_purchase
    assert_eq!(
        inv(err_of(&dp(), |v| v["categories"] = json!(["contact", "contact"]))),
        "categories[1]"
    );
    assert_eq!(
        inv(err_of(&dp(), |v| v["categories"] = json!(["contact", "health"]))),
        "sensitive"
    );
    assert_eq!(
        inv(err_of(&dp(), |v| v["sensitive"] = json!(["health"]))),
        "sensitive"
    );
    assert_eq!(
        inv(err_of(&dp(), |v| v["purposes"] = json!([]))),
        "purposes"
    );
    assert_eq!(
        inv(err_of(&dp(), |v| v["upstream"] = json!([]))),
        "upstream"
    );
    assert_eq!(
        inv(err_of(&dp(), |v| v["seller"]["registry_ids"] = json!({}))),
        "seller.registry_ids"
    );
    assert_eq!(
        inv(err_of(&dp(), |v| v["seller"]["registry_ids"]["CA"] = json!("x"))),
        "seller.registry_ids.CA"
    );
    assert_eq!(
        inv(err_of(&dp(), |v| v["seller"]["registry_ids"]["vt"] = json!(5))),
        "seller.registry_ids.vt"
    );
    assert_eq!(
        inv(err_of(&dp(), |v| v["contract_hash"] = json!("00"))),
        "contract_hash"
    );
}

#[test]
fn oversize_entry() {
    // 40 criteria would be caught by the count limit; instead fill every allowed
    // text field to its limit so only the 16 KiB canonical limit trips.
    let e = err_of(&td(), |v| {
        let c: Vec<Value> = (0..32)
            .map(|_| json!({"type": "geo", "rule": "r".repeat(500), "effect": "include"}))
            .collect();
        v["criteria"] = json!(c);
    });
    match e {
        EntryError::TooLarge { field, size, max } => {
            assert_eq!(field, "entry");
            assert_eq!(max, MAX_ENTRY_BYTES);
            assert!(size > max);
        }
        other => panic!("{other}"),
    }
    let big = vec![b' '; MAX_SUBMISSION_BYTES + 1];
    assert!(matches!(
        SignedEntry::parse_json(&big),
        Err(EntryError::TooLarge { .. })
    ));
}

// ---- submissions, signatures, hashes ----

fn signed(e: Entry) -> (SignedEntry, ed25519_dalek::SigningKey) {
    let sk = samples::signing_key("acme");
    let id = ed25519_key_id(CO, &sk.verifying_key());
    (SignedEntry::sign(e, &sk, id).unwrap(), sk)
}

#[test]
fn signatures_verify_and_bind_every_field() {
    for e in all_samples() {
        let (s, sk) = signed(e.clone());
        s.verify(&sk.verifying_key()).unwrap();
        assert_eq!(
            s.key_id_bytes().unwrap(),
            ed25519_key_id(CO, &sk.verifying_key())
        );
        // Another key fails.
        let other = samples::signing_key("mallory").verifying_key();
        assert_eq!(s.verify(&other), Err(EntryError::BadSignature));
        // Every single-field change fails, and changes the entry hash.
        let h = e.entry_hash().unwrap();
        for (path, changed) in single_field_changes(&e) {
            let mut t = s.clone();
            t.entry = changed;
            assert_eq!(
                t.verify(&sk.verifying_key()),
                Err(EntryError::BadSignature),
                "{path}"
            );
            assert_ne!(t.entry.entry_hash().unwrap(), h, "{path}");
        }
    }
}

/// For every leaf value of the entry's JSON (strings and integers), a valid entry
/// that differs only there.
fn single_field_changes(e: &Entry) -> Vec<(String, Entry)> {
    fn walk(v: &Value, path: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m
                .iter()
                .for_each(|(k, x)| walk(x, format!("{path}/{k}"), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| walk(x, format!("{path}/{i}"), out)),
            _ => out.push(path),
        }
    }
    let base = value(e);
    let mut paths = Vec::new();
    walk(&base, String::new(), &mut paths);
    let mut out = Vec::new();
    for p in paths {
        if p == "/kind" {
            continue; // changing the kind cannot give a valid entry of the same fields
        }
        for candidate in alternatives(base.pointer(&p).unwrap()) {
            let mut v = base.clone();
            *v.pointer_mut(&p).unwrap() = candidate;
            if let Ok(changed) = Entry::parse_value(&v) {
                out.push((p.clone(), changed));
                break;
            }
        }
    }
    // Every field must have produced a valid variant, else the test proves nothing.
    let expected = {
        let mut n = Vec::new();
        walk(&base, String::new(), &mut n);
        n.len() - 1
    };
    // Linked fields (verifier_key, sensitive mirrors categories) cannot change alone.
    assert!(
        out.len() + 3 >= expected,
        "{} of {expected} fields changed",
        out.len()
    );
    out
}

fn alternatives(v: &Value) -> Vec<Value> {
    match v {
        Value::Number(n) => vec![
            json!(n.as_u64().unwrap() + 1),
            json!(n.as_u64().unwrap() - 1),
        ],
        Value::String(s) => {
            let mut alts = Vec::new();
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                let flip = if s.starts_with('0') { "1" } else { "0" };
                alts.push(json!(format!("{flip}{}", &s[1..])));
            }
            if let Some(rest) = s.strip_suffix('Z') {
                alts.push(json!(format!("{}1Z", &rest[..rest.len() - 1])));
                alts.push(json!(format!("{}2Z", &rest[..rest.len() - 1])));
            }
            for name in [
                Channel::NAMES,
                CriterionType::NAMES,
                Effect::NAMES,
                LegalBasis::NAMES,
                Category::NAMES,
                CollectionMethod::NAMES,
                Purpose::NAMES,
                KeyAction::NAMES,
                SourceType::NAMES,
            ] {
                if name.contains(&s.as_str()) {
                    alts.extend(name.iter().filter(|x| **x != s).map(|x| json!(x)));
                }
            }
            alts.push(json!(format!("{s}x")));
            alts.push(json!(format!("x{s}")));
            // A time ending in 1 or 2 seconds already: only a real change counts.
            alts.retain(|a| a != v);
            alts
        }
        _ => vec![],
    }
}

#[test]
fn submission_json_round_trip_and_errors() {
    let (s, sk) = signed(td());
    let body = serde_json::to_vec_pretty(&s).unwrap();
    let back = SignedEntry::parse_json(&body).unwrap();
    assert_eq!(back, s);
    back.verify(&sk.verifying_key()).unwrap();
    let via_serde: SignedEntry = serde_json::from_slice(&body).unwrap();
    assert_eq!(via_serde, s);

    let mut v = serde_json::to_value(&s).unwrap();
    v["entry"]["criteria"][2]["effect"] = json!("perhaps");
    let e = SignedEntry::parse_value(&v).unwrap_err();
    assert!(
        matches!(&e, EntryError::BadEnum { field, .. } if field == "entry.criteria[2].effect"),
        "{e}"
    );

    let mut v = serde_json::to_value(&s).unwrap();
    v["note"] = json!("hi");
    assert_eq!(
        SignedEntry::parse_value(&v).unwrap_err(),
        EntryError::UnknownField("note".into())
    );
    let mut v = serde_json::to_value(&s).unwrap();
    v["key_id"] = json!("XYZ");
    assert!(
        matches!(SignedEntry::parse_value(&v), Err(EntryError::Invalid { field, .. }) if field == "key_id")
    );
    let mut v = serde_json::to_value(&s).unwrap();
    v["signature"] = json!("AAAA");
    assert!(
        matches!(SignedEntry::parse_value(&v), Err(EntryError::Invalid { field, .. }) if field == "signature")
    );
    let mut v = serde_json::to_value(&s).unwrap();
    v.as_object_mut().unwrap().remove("signature");
    assert_eq!(
        SignedEntry::parse_value(&v).unwrap_err(),
        EntryError::MissingField("signature".into())
    );

    assert!(matches!(
        SignedEntry::parse_json(b"{\"entry\": "),
        Err(EntryError::Json(_))
    ));
    assert_eq!(
        SignedEntry::parse_json(b"{\"a\":\"\xff\"}"),
        Err(EntryError::NotUtf8(6))
    );
    // A float anywhere in the entry is named precisely.
    let mut v = serde_json::to_value(&s).unwrap();
    v["entry"]["subject"] = json!(1.5);
    let e = SignedEntry::parse_value(&v).unwrap_err();
    assert!(
        matches!(&e, EntryError::WrongType { field, .. } if field == "entry.subject"),
        "{e}"
    );
    // Signing refuses an invalid entry.
    let Entry::TargetingDecision(mut t) = td() else {
        unreachable!()
    };
    t.company = "ACME".into();
    assert!(SignedEntry::sign(Entry::TargetingDecision(t), &sk, [0; 4]).is_err());
}

#[test]
fn tampered_signature_fails() {
    let (mut s, sk) = signed(dp());
    let mut raw =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &s.signature).unwrap();
    raw[10] ^= 1;
    s.signature = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw);
    assert_eq!(s.verify(&sk.verifying_key()), Err(EntryError::BadSignature));
}

// ---- leaves ----

#[test]
fn leaf_round_trip_and_hash() {
    for e in all_samples() {
        let (s, _) = signed(e);
        let leaf = Leaf::new(s.clone(), "2026-11-29T05:31:41Z".into());
        let bytes = leaf.to_bytes().unwrap();
        assert!(bytes.len() < 65_536);
        assert!(jcs::is_canonical(&bytes));
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.starts_with("{\"entry\":{"), "{text}");
        let i = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
        assert!(i("key_id") < i("logged_at") && i("logged_at") < i("signature"));
        let back = Leaf::parse(&bytes).unwrap();
        assert_eq!(back, leaf);
        assert_eq!(back.signed_entry(), s);
        assert_eq!(leaf.leaf_hash(), leaf_hash(&bytes));
    }
}

#[test]
fn leaf_must_be_canonical() {
    let (s, _) = signed(td());
    let leaf = Leaf::new(s, "2026-11-29T05:31:41Z".into());
    let bytes = leaf.to_bytes().unwrap();
    let pretty = serde_json::to_vec_pretty(&leaf).unwrap();
    assert_eq!(Leaf::parse(&pretty), Err(EntryError::NotCanonical));
    let mut trailing = bytes.clone();
    trailing.push(b'\n');
    assert!(Leaf::parse(&trailing).is_err());
    // Same members, different order: the signature moved to the front.
    let text = String::from_utf8(bytes.clone()).unwrap();
    let at = text.find(",\"signature\":").unwrap();
    let reordered = format!("{{{},{}}}", &text[at + 1..text.len() - 1], &text[1..at]);
    assert_eq!(reordered.len(), text.len());
    assert_eq!(
        Leaf::parse(reordered.as_bytes()),
        Err(EntryError::NotCanonical)
    );
    // A duplicate member is a syntax fault (RFC 8785 takes I-JSON input).
    let duplicated = text.replacen("{\"entry\":", "{\"signature\":\"x\",\"entry\":", 1);
    assert!(matches!(
        Leaf::parse(duplicated.as_bytes()),
        Err(EntryError::Json(m)) if m.contains("duplicate member name \"signature\"")
    ));
    // Canonical but invalid: a bad logged_at is still named.
    let mut v: Value = serde_json::from_slice(&bytes).unwrap();
    v["logged_at"] = json!("2026-11-29T05:31:41.5Z");
    let e = Leaf::parse(&jcs::canonicalize(&v).unwrap()).unwrap_err();
    assert_eq!(
        e,
        EntryError::BadTime {
            field: "logged_at".into(),
            value: "2026-11-29T05:31:41.5Z".into()
        }
    );
    // to_bytes refuses what parse would refuse.
    let mut bad = leaf.clone();
    bad.logged_at = "now".into();
    assert!(bad.to_bytes().is_err());
    // Leaves over the bundle limit are refused.
    assert!(matches!(
        Leaf::parse(&vec![b' '; 65_536]),
        Err(EntryError::TooLarge { .. })
    ));
}

// ---- subjects ----

#[test]
fn subject_commitments_are_unlinkable_and_not_dictionary_attackable() {
    let id = SubjectId::email(" Alice@Example.com ").unwrap();
    let a = Opening {
        id: id.clone(),
        salt: Salt([1; 32]),
    };
    let b = Opening {
        id: id.clone(),
        salt: Salt([2; 32]),
    };
    assert_ne!(a.commitment(), b.commitment());
    assert!(verify_opening(&a.commitment(), &a));
    assert!(!verify_opening(&a.commitment(), &b));
    let wrong = Opening {
        id: SubjectId::email("alice@example.org").unwrap(),
        salt: a.salt.clone(),
    };
    assert!(!verify_opening(&a.commitment(), &wrong));
    let fresh = Opening::generate(id.clone()).unwrap();
    assert_ne!(fresh.commitment(), a.commitment());

    // A dictionary of plain hashes of known addresses (with every usual spelling)
    // matches neither commitment.
    let mut dictionary = Vec::new();
    for addr in [
        "alice@example.com",
        "Alice@Example.com",
        "email:alice@example.com",
        "bob@example.com",
    ] {
        dictionary.push(sha256(addr.as_bytes()));
        dictionary.push(sha256(format!("candor-subject/v1\n{addr}").as_bytes()));
        dictionary.push(commit(
            &SubjectId::email("alice@example.com").unwrap(),
            &Salt([0; 32]),
        ));
    }
    for c in [a.commitment(), b.commitment(), fresh.commitment()] {
        assert!(!dictionary.contains(&c));
    }
    // A commitment made for an entry round-trips through the entry.
    let e = samples::targeting_decision(CO, a.commitment());
    let Entry::TargetingDecision(t) = Entry::parse_json(&e.canonical_bytes().unwrap()).unwrap()
    else {
        unreachable!()
    };
    assert!(verify_opening(&t.subject, &a));
}

#[test]
fn load_entries_are_distinct() {
    let mut hashes: Vec<Hash> = (0..200)
        .map(|n| {
            samples::load_targeting_decision(CO, n)
                .entry_hash()
                .unwrap()
        })
        .collect();
    for n in [0, 199] {
        samples::load_targeting_decision(CO, n).validate().unwrap();
    }
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), 200);
}

// ---- spec/entries.md stays in step with the code ----

#[test]
fn spec_examples_match_the_code() {
    let spec = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../spec/entries.md"
    ))
    .unwrap();
    let opening = samples::opening("alice@example.com", 1);
    assert!(spec.contains(&serde_json::to_string(&opening).unwrap()));
    let subject = opening.commitment();
    let sk = samples::signing_key("acme");
    let vk = sk.verifying_key();
    // The spec's examples carry fixed dates: canonical bytes, hashes and signatures
    // do not depend on the clock.
    let examples = [
        samples::dated(
            samples::targeting_decision(CO, subject),
            "2026-11-29T05:31:40Z",
        ),
        samples::dated(
            samples::targeting_decision_from_purchase(CO, subject, 7, sha256(b"leaf 7")),
            "2026-11-29T05:31:40Z",
        ),
        samples::dated(samples::data_purchase(CO), "2026-10-01T09:00:00Z"),
        samples::dated(
            samples::company_key(CO, &vk, KeyAction::Register),
            "2026-11-01T00:00:00Z",
        ),
    ];
    for e in &examples {
        let canonical = String::from_utf8(e.canonical_bytes().unwrap()).unwrap();
        assert!(
            spec.contains(&format!("\n{canonical}\n")),
            "spec lacks canonical bytes of {}",
            e.kind()
        );
        assert!(spec.contains(&format!("Entry hash: `{}`", e.entry_hash().unwrap())));
        assert!(spec.contains(&format!("({} bytes,", canonical.len())));
        // The pretty example in the spec parses to the same entry.
        let pretty = serde_json::to_string_pretty(e).unwrap();
        assert!(
            spec.contains(&pretty),
            "spec lacks the JSON example of {}",
            e.kind()
        );
    }
    let s = SignedEntry::sign(examples[0].clone(), &sk, ed25519_key_id(CO, &vk)).unwrap();
    assert!(spec.contains(&verifier_key_string(CO, &vk)));
    assert!(spec.contains(&format!("\n{}\n", s.signature)));
    let leaf = Leaf::new(s, "2026-11-29T05:31:41Z".into());
    let bytes = leaf.to_bytes().unwrap();
    assert!(spec.contains(&format!("\n{}\n", String::from_utf8(bytes).unwrap())));
    assert!(spec.contains(&format!("leaf hash is `{}`", leaf.leaf_hash())));
}
