//! SMART on FHIR end to end (docs/authorization.md): the `fhir-server` binary with
//! `FHIR_AUTH=smart` against the real Keycloak realm `fhir`, every valid token obtained
//! through a real grant (client_credentials with a secret or a private_key_jwt assertion,
//! the password grant of the development client for the demo users). Tokens are forged only
//! to be invalid (altered, re-signed, unsigned).
//!
//! - 401 with `WWW-Authenticate: Bearer ... error="invalid_token"` and an OperationOutcome:
//!   missing, malformed, expired, tampered, `alg: none`, HS256, unknown key, wrong issuer,
//!   wrong audience; `/metadata`, SMART discovery and `/health` need no token;
//! - 403 `forbidden` for each of `c r u d s` that the token's scopes (v1 and v2) lack;
//! - patient/ scopes confined to the patient's compartment: reads, searches, includes,
//!   history and writes of patient A never reach patient B;
//! - user/ scopes (clinician) and system/ scopes (backend service) see everyone;
//! - `$analytics` for system/ and user/ readers only;
//! - `/.well-known/smart-configuration` field by field against Keycloak's own discovery and
//!   the realm's client scopes.
//!
//! Without `FHIR_AUTH_ISSUER` (scripts/test sets it) the tests skip, except in CI. Keycloak
//! writes `aud` = `FHIR_BASE_URL` (default `http://localhost:8080/fhir`), so the servers run
//! with `FHIR_AUTH_AUDIENCE` set to it.
#![allow(clippy::unwrap_used, reason = "tests")]

mod smart_support;

use std::collections::BTreeSet;

use ferrum_tests::{Resp, TestServer, assert_outcome, entries, json};
use serde_json::Value;
use smart_support::{
    Caller, Keycloak, assert_401, assert_403, claims, demo_resources, foreign_rsa_signed,
    hmac_signed, jwt_header, keycloak, now, realm_file, unsigned, with_payload, with_signature_of,
};

// --- 401 ---------------------------------------------------------------------------

#[tokio::test]
async fn invalid_tokens_get_401_and_discovery_needs_none() {
    let Some(kc) = keycloak().await else { return };
    let master = kc.realm_issuer("master");
    let issuer_env = [("FHIR_AUTH_ISSUER", master.as_str())];
    let audience_env = [("FHIR_AUTH_AUDIENCE", "http://other/fhir")];
    let (server, other_audience, other_issuer) = tokio::join!(
        kc.server(&[]),
        kc.server(&audience_env),
        kc.server(&issuer_env),
    );
    let good = kc.system_token("system/*.rs").await;
    let patient_a = kc
        .user_token("patient-a", "launch/patient patient/*.rs")
        .await;

    // The control: the real token is fine, in either spelling of the scheme.
    let ok = Caller::new(&server, &good).get("Patient").await;
    assert_eq!(ok.status, 200, "a valid token: {}", ok.describe());
    let resp = server
        .send(
            server
                .request(reqwest::Method::GET, "Patient")
                .header("authorization", format!("bearer {good}")),
        )
        .await;
    assert_eq!(
        resp.status,
        200,
        "scheme in lower case: {}",
        resp.describe()
    );

    // No token at all, on reads, searches and writes.
    assert_401(&server.get("Patient").await, "no token, search");
    assert_401(&server.get("Patient/x").await, "no token, read");
    assert_401(&server.get("_history").await, "no token, history");
    assert_401(
        &server
            .post("Patient", &json!({"resourceType": "Patient"}))
            .await,
        "no token, create",
    );
    assert_401(&server.get("$analytics").await, "no token, $analytics");
    // Not a bearer token.
    for (what, value) in [
        (
            "Basic credentials",
            "Basic ZmVycnVtLWRldjpmZXJydW0tZGV2LXNlY3JldA==".to_owned(),
        ),
        ("Bearer without a token", "Bearer".to_owned()),
        ("Bearer and blanks", "Bearer    ".to_owned()),
        ("a token without a scheme", good.clone()),
    ] {
        let resp = server
            .send(
                server
                    .request(reqwest::Method::GET, "Patient")
                    .header("authorization", value),
            )
            .await;
        assert_401(&resp, what);
    }

    let t = now();
    let mut expired = claims(&good);
    expired["iat"] = json!(t - 3900);
    expired["exp"] = json!(t - 3600);
    let mut more_scope = claims(&good);
    more_scope["scope"] = json!("system/*.cruds");
    let mut other_patient = claims(&patient_a);
    other_patient["patient"] = json!("demo-patient-b");
    let mut later = claims(&good);
    later["exp"] = json!(later["exp"].as_i64().unwrap() + 3600);
    let jwk_text = kc.jwks().await["keys"][0].to_string();
    let kid = jwt_header(&good)["kid"].as_str().unwrap().to_owned();
    let other_token = kc.system_token("system/Patient.rs").await;
    let forged = [
        ("garbage", "garbage".to_owned()),
        ("three dots", "a.b.c".to_owned()),
        (
            "the header only",
            good.split('.').next().unwrap().to_owned(),
        ),
        ("a truncated signature", good[..good.len() - 10].to_owned()),
        (
            "expired (exp an hour ago; the signature no longer matches)",
            with_payload(&good, &expired),
        ),
        (
            "tampered: scope widened to system/*.cruds",
            with_payload(&good, &more_scope),
        ),
        (
            "tampered: patient switched to demo-patient-b",
            with_payload(&patient_a, &other_patient),
        ),
        ("tampered: exp extended", with_payload(&good, &later)),
        (
            "the signature of another real token",
            with_signature_of(&good, &other_token),
        ),
        ("alg none", unsigned(&good)),
        ("HS256 with a made-up secret", hmac_signed(&good, b"secret")),
        (
            "HS256 with the realm's public key as the secret",
            hmac_signed(&good, jwk_text.as_bytes()),
        ),
        (
            "RS256 by another key, under a made-up kid",
            foreign_rsa_signed(&good, "made-up-kid"),
        ),
        (
            "RS256 by another key, under the realm's kid",
            foreign_rsa_signed(&good, &kid),
        ),
    ];
    for (what, token) in &forged {
        assert_401(&Caller::new(&server, token).get("Patient").await, what);
    }
    // Forged patient tokens give nothing either.
    assert_401(
        &Caller::new(&server, &with_payload(&patient_a, &other_patient))
            .get("Patient/demo-patient-b")
            .await,
        "tampered patient token, read",
    );

    // Wrong issuer, both ways: a token of the realm master (if the administrator can have
    // one) at the fhir server, and the fhir realm's tokens at a server of the realm master.
    match kc.admin_token().await {
        Ok(admin) => {
            assert_eq!(
                claims(&admin)["iss"],
                master.as_str(),
                "the admin token's issuer"
            );
            assert_401(
                &Caller::new(&server, &admin).get("Patient").await,
                "a token of the realm master",
            );
        }
        Err(why) => eprintln!("no token of the realm master ({why}): that case is left out"),
    }
    let wrong_issuer = Caller::new(&other_issuer, &good).get("Patient").await;
    assert_401(
        &wrong_issuer,
        "a fhir realm token at a server of the realm master",
    );
    // Wrong audience: Keycloak's real tokens, at a server for http://other/fhir.
    assert_401(
        &Caller::new(&other_audience, &good).get("Patient").await,
        "wrong audience",
    );
    assert_401(
        &Caller::new(&other_audience, &patient_a)
            .get("Patient/demo-patient-a")
            .await,
        "wrong audience, patient token",
    );

    // The public routes need no token, on every server.
    for (name, s) in [
        ("server", &server),
        ("other audience", &other_audience),
        ("other issuer", &other_issuer),
    ] {
        let metadata = s.get("metadata").await;
        assert_eq!(metadata.status, 200, "{name}: {}", metadata.describe());
        assert_eq!(metadata.json["resourceType"], "CapabilityStatement");
        let discovery = s.get(".well-known/smart-configuration").await;
        assert_eq!(discovery.status, 200, "{name}: {}", discovery.describe());
        let health = s.get(&format!("http://{}/health", s.addr())).await;
        assert_eq!(health.status, 200, "{name}: {}", health.describe());
    }
    assert_eq!(
        other_issuer
            .get(".well-known/smart-configuration")
            .await
            .json["issuer"],
        master.as_str()
    );
}

// --- 403: the five letters ----------------------------------------------------------

/// The requests that need one permission letter on Patient (each must be refused, or
/// each must succeed). `seed` may do anything and makes resources to update and delete.
async fn attempt(letter: char, caller: &Caller<'_>, seed: &Caller<'_>) -> Vec<(String, Resp)> {
    let patient = |family: &str| json!({"resourceType": "Patient", "name": [{"family": family}]});
    let fresh = seed.post("Patient", &patient("Fresh")).await;
    assert_eq!(fresh.status, 201, "seed: {}", fresh.describe());
    let id = fresh.id().unwrap().to_owned();
    let mut out = Vec::new();
    match letter {
        'c' => {
            out.push((
                "POST Patient".into(),
                caller.post("Patient", &patient("Created")).await,
            ));
        }
        'r' => {
            for path in [
                format!("Patient/{id}"),
                format!("Patient/{id}/_history/1"),
                format!("Patient/{id}/_history"),
            ] {
                out.push((format!("GET {path}"), caller.get(&path).await));
            }
        }
        'u' => {
            let mut body = patient("Updated");
            body["id"] = json!(id);
            out.push((
                format!("PUT Patient/{id}"),
                caller.put(&format!("Patient/{id}"), &body).await,
            ));
            // Update as create (a PUT to a new id) is an update too.
            let new_id = ferrum_tests::unique("smart-new");
            body["id"] = json!(new_id);
            out.push((
                format!("PUT Patient/{new_id} (new)"),
                caller.put(&format!("Patient/{new_id}"), &body).await,
            ));
        }
        'd' => {
            out.push((
                format!("DELETE Patient/{id}"),
                caller.delete(&format!("Patient/{id}")).await,
            ));
        }
        's' => {
            for path in [
                "Patient?family=Fresh",
                "Patient/_search?family=Fresh",
                "Patient/_history",
                "?_type=Patient",
            ] {
                out.push((format!("GET {path}"), caller.get(path).await));
            }
        }
        _ => unreachable!(),
    }
    out
}

#[tokio::test]
async fn each_permission_letter_missing_from_the_scopes_is_403() {
    let Some(kc) = keycloak().await else { return };
    let server = kc.server(&[]).await;
    let seed = Caller::new(&server, &kc.system_token("system/*.cruds").await);
    // The realm's scopes per type are .rs .cruds .read .write .* (no single letters), so
    // each letter is taken away by one v2 and one v1 scope, or by a scope on another type.
    let names = [
        "system/Patient.rs",
        "system/Patient.read",
        "system/Patient.write",
        "system/Patient.cruds",
        "system/Patient.*",
        "system/Invoice.cruds",
        "system/Invoice.*",
    ];
    let mut tokens = Vec::new();
    for name in names {
        tokens.push((name, kc.system_token(name).await));
    }
    let token = |name: &str| {
        tokens
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    let lacking: [(char, &[&str]); 5] = [
        (
            'c',
            &[
                "system/Patient.rs",
                "system/Patient.read",
                "system/Invoice.cruds",
            ],
        ),
        ('r', &["system/Patient.write", "system/Invoice.*"]),
        (
            'u',
            &[
                "system/Patient.rs",
                "system/Patient.read",
                "system/Invoice.cruds",
            ],
        ),
        (
            'd',
            &[
                "system/Patient.rs",
                "system/Patient.read",
                "system/Invoice.*",
            ],
        ),
        ('s', &["system/Patient.write", "system/Invoice.cruds"]),
    ];
    let having: [(char, &[&str]); 5] = [
        (
            'c',
            &[
                "system/Patient.write",
                "system/Patient.cruds",
                "system/Patient.*",
            ],
        ),
        (
            'r',
            &[
                "system/Patient.rs",
                "system/Patient.read",
                "system/Patient.*",
            ],
        ),
        ('u', &["system/Patient.write", "system/Patient.cruds"]),
        ('d', &["system/Patient.write", "system/Patient.*"]),
        (
            's',
            &[
                "system/Patient.rs",
                "system/Patient.read",
                "system/Patient.cruds",
            ],
        ),
    ];
    for (letter, scopes) in lacking {
        for scope in scopes {
            let caller = Caller::new(&server, &token(scope));
            for (what, resp) in attempt(letter, &caller, &seed).await {
                assert_403(&resp, &format!("'{letter}' with {scope}: {what}"));
            }
        }
    }
    for (letter, scopes) in having {
        for scope in scopes {
            let caller = Caller::new(&server, &token(scope));
            for (what, resp) in attempt(letter, &caller, &seed).await {
                assert!(
                    (200..300).contains(&resp.status),
                    "'{letter}' with {scope}: {what}: {}",
                    resp.describe()
                );
            }
        }
    }

    // System-level search and history need `s` on some type.
    let write_only = Caller::new(&server, &token("system/Patient.write"));
    assert_403(
        &write_only.get("").await,
        "GET [base] with system/Patient.write",
    );
    assert_403(
        &write_only.get("_history").await,
        "GET [base]/_history with system/Patient.write",
    );
    // ...and a system search names no type it may not search.
    let patients_only = Caller::new(&server, &token("system/Patient.rs"));
    assert_403(
        &patients_only.get("?_type=Patient,Invoice").await,
        "?_type=Patient,Invoice with system/Patient.rs",
    );
    let all = patients_only.ids("?_count=100").await;
    assert!(!all.is_empty());
    assert!(
        all.iter().all(|id| id.starts_with("Patient/")),
        "system search with system/Patient.rs: {all:?}"
    );
}

// --- the patient compartment -----------------------------------------------------------

const A: &str = "demo-patient-a";
const B: &str = "demo-patient-b";

/// Accounts and Invoices beyond deploy/demo: one more of each per patient, B's second
/// Invoice in B's compartment by `recipient` only.
fn extra_resources() -> Vec<Value> {
    let account = |patient: &str| {
        json!({
            "resourceType": "Account",
            "id": format!("{patient}-account"),
            "status": "active",
            "name": format!("{patient} billing"),
            "subject": [{"reference": format!("Patient/{patient}")}],
            "owner": {"reference": "Organization/demo-clinic"},
        })
    };
    let invoice = |id: &str, patient: &str, by_subject: bool| {
        let mut invoice = json!({
            "resourceType": "Invoice",
            "id": id,
            "status": "draft",
            "recipient": {"reference": format!("Patient/{patient}")},
            "issuer": {"reference": "Organization/demo-clinic"},
            "account": {"reference": format!("Account/{patient}-account")},
            "participant": [{"actor": {"reference": "Practitioner/demo-clinician"}}],
            "totalGross": {"value": 10.0, "currency": "USD"},
        });
        if by_subject {
            invoice["subject"] = json!({"reference": format!("Patient/{patient}")});
        }
        invoice
    };
    vec![
        account(A),
        account(B),
        invoice("demo-patient-a-invoice-2", A, true),
        invoice("demo-patient-b-invoice-2", B, false),
    ]
}

/// Loads deploy/demo and [`extra_resources`] with a `system/*.cruds` token.
async fn load_demo(server: &TestServer, kc: &Keycloak) {
    let admin = Caller::new(server, &kc.system_token("system/*.cruds").await);
    for resource in demo_resources().into_iter().chain(extra_resources()) {
        let path = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        let resp = admin.put(&path, &resource).await;
        assert!(
            matches!(resp.status, 200 | 201),
            "PUT {path}: {}",
            resp.describe()
        );
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Patient A's resources, as loaded.
fn a_resources() -> BTreeSet<String> {
    set(&[
        "Patient/demo-patient-a",
        "Account/demo-patient-a-account",
        "Invoice/demo-patient-a-invoice-1",
        "Invoice/demo-patient-a-invoice-2",
    ])
}

/// Resources of the compartment types outside A's compartment.
fn not_a_resources() -> BTreeSet<String> {
    set(&[
        "Patient/demo-patient-b",
        "Patient/demo-alice",
        "Patient/demo-bob",
        "Account/demo-patient-b-account",
        "Account/demo-alice-account",
        "Invoice/demo-patient-b-invoice-1",
        "Invoice/demo-patient-b-invoice-2",
        "Invoice/demo-alice-invoice-1",
    ])
}

fn of_type(ids: &BTreeSet<String>, types: &[&str]) -> BTreeSet<String> {
    ids.iter()
        .filter(|id| types.iter().any(|t| id.starts_with(&format!("{t}/"))))
        .cloned()
        .collect()
}

/// Nothing outside A's compartment among `ids`; returns them.
#[track_caller]
fn assert_only_a(ids: &BTreeSet<String>, what: &str) {
    let outside = not_a_resources();
    let leaked: Vec<_> = ids.intersection(&outside).collect();
    assert!(leaked.is_empty(), "{what}: leaks {leaked:?} (all: {ids:?})");
    let compartment = of_type(ids, &["Patient", "Account", "Invoice", "Group"]);
    assert!(
        compartment.is_subset(&a_resources()),
        "{what}: {compartment:?} is not within A's {:?}",
        a_resources()
    );
}

#[tokio::test]
async fn a_patient_token_reaches_only_its_patients_compartment() {
    let Some(kc) = keycloak().await else { return };
    let server = kc.server(&[]).await;
    load_demo(&server, &kc).await;
    let token = kc
        .user_token(
            "patient-a",
            "openid fhirUser launch/patient patient/*.cruds",
        )
        .await;
    assert_eq!(claims(&token)["patient"], A);
    let a = Caller::new(&server, &token);
    // A deleted resource outside the compartment (Alice's invoice).
    let admin = Caller::new(&server, &kc.system_token("system/*.cruds").await);
    let gone = admin.delete("Invoice/demo-alice-invoice-1").await;
    assert_eq!(gone.status, 204, "{}", gone.describe());
    assert_eq!(admin.get("Invoice/demo-alice-invoice-1").await.status, 410);

    // Reads: her own, 200; anyone else's, 404 as if it did not exist.
    for path in [
        "Patient/demo-patient-a",
        "Account/demo-patient-a-account",
        "Invoice/demo-patient-a-invoice-1",
        "Invoice/demo-patient-a-invoice-2",
        "Patient/demo-patient-a/_history/1",
        // Outside the compartment, but readable under patient/ scopes (docs).
        "Organization/demo-clinic",
        "Practitioner/demo-clinician",
    ] {
        let resp = a.get(path).await;
        assert_eq!(resp.status, 200, "A reads {path}: {}", resp.describe());
    }
    let missing = a.get("Patient/no-such-patient").await;
    for path in [
        "Patient/demo-patient-b",
        "Patient/demo-alice",
        "Account/demo-patient-b-account",
        "Invoice/demo-patient-b-invoice-1",
        "Invoice/demo-patient-b-invoice-2",
        "Patient/demo-patient-b/_history/1",
        "Invoice/demo-patient-b-invoice-1/_history/1",
        // Deleted: 404 like any other resource A may not see, not 410.
        "Invoice/demo-alice-invoice-1",
        "Invoice/demo-alice-invoice-1/_history/2",
    ] {
        let resp = a.get(path).await;
        let issue = assert_outcome(&resp, 404);
        assert_eq!(
            issue["code"], missing.json["issue"][0]["code"],
            "A reads {path}: not like a missing resource"
        );
    }

    // Conditional reads do not tell either.
    for (name, value) in [
        ("if-none-match", "W/\"1\""),
        ("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT"),
    ] {
        let resp = a
            .send_with(
                reqwest::Method::GET,
                "Patient/demo-patient-b",
                None,
                &[(name, value)],
            )
            .await;
        assert_outcome(&resp, 404);
    }

    // Searches: A's only, filtered in the query (totals and paging agree).
    let invoices = a.ids("Invoice").await;
    assert_eq!(
        invoices,
        set(&[
            "Invoice/demo-patient-a-invoice-1",
            "Invoice/demo-patient-a-invoice-2"
        ]),
        "Invoice search"
    );
    assert_eq!(a.ids("Patient").await, set(&["Patient/demo-patient-a"]));
    assert_eq!(
        a.ids("Account").await,
        set(&["Account/demo-patient-a-account"])
    );
    for path in [
        "Patient?_id=demo-patient-b",
        "Patient?family=Baker",
        "Invoice?subject=Patient/demo-patient-b",
        "Invoice?recipient=Patient/demo-patient-b",
        "Invoice?patient=demo-patient-b",
        "Account?subject=Patient/demo-patient-b",
        "Invoice?subject:Patient.family=Baker",
        "Patient?_has:Invoice:recipient:status=draft&_id=demo-patient-b",
    ] {
        let found = a.ids(path).await;
        assert!(found.is_empty(), "A searches {path}: {found:?}");
    }
    assert_eq!(
        a.ids("Patient?_id=demo-patient-a,demo-patient-b").await,
        set(&["Patient/demo-patient-a"])
    );
    // Searches by POST are confined the same way.
    for (path, form) in [
        ("Invoice/_search", "subject=Patient/demo-patient-b"),
        ("Patient/_search", "_id=demo-patient-b"),
        ("_search", "_type=Invoice,Patient,Account&_count=100"),
        ("Invoice/_search", ""),
    ] {
        let what = format!("POST {path} {form}");
        let resp = a.post_form(path, form).await;
        assert_only_a(&Caller::ids_of(&resp, &what), &what);
    }
    let total = a.get("Invoice?_summary=count").await;
    assert_eq!(total.status, 200, "{}", total.describe());
    assert_eq!(
        total.json["total"], 2,
        "Invoice?_summary=count: {}",
        total.text
    );
    let paged = a.get("Invoice?_count=1").await;
    assert_eq!(entries(&paged.json).len(), 1, "{}", paged.describe());
    let next = ferrum_tests::link(&paged.json, "next").expect("a second page of A's invoices");
    let second = a.get(&next).await;
    assert_eq!(second.status, 200, "{}", second.describe());
    let mut both = Caller::ids_of(&paged, "page 1");
    both.extend(Caller::ids_of(&second, "page 2"));
    assert_eq!(both, invoices, "paging through A's invoices");
    assert!(ferrum_tests::link(&second.json, "next").is_none());

    // System-level search: each type under its grant.
    let system = a.ids("?_type=Invoice,Patient").await;
    assert_eq!(
        system,
        set(&[
            "Patient/demo-patient-a",
            "Invoice/demo-patient-a-invoice-1",
            "Invoice/demo-patient-a-invoice-2"
        ]),
        "?_type=Invoice,Patient"
    );
    let everything = a.ids("?_count=100").await;
    assert_only_a(&everything, "GET [base]");
    assert!(everything.is_superset(&a_resources()), "{everything:?}");
    assert!(everything.contains("Organization/demo-clinic"));

    // _include and _revinclude never bring anyone else's resources, and still bring A's.
    let (pa, acc, inv1, inv2) = (
        "Patient/demo-patient-a",
        "Account/demo-patient-a-account",
        "Invoice/demo-patient-a-invoice-1",
        "Invoice/demo-patient-a-invoice-2",
    );
    let (clinic, clinician) = ("Organization/demo-clinic", "Practitioner/demo-clinician");
    let includes: [(&str, &[&str]); 13] = [
        ("Patient?_revinclude=Invoice:subject", &[pa, inv1, inv2]),
        (
            "Patient?_revinclude=Invoice:recipient&_revinclude=Account:subject",
            &[pa, inv1, inv2, acc],
        ),
        ("Patient?_revinclude=*", &[pa, inv1, inv2, acc]),
        (
            "Organization?_revinclude=Invoice:issuer",
            &[clinic, inv1, inv2],
        ),
        (
            "Organization?_revinclude=Patient:organization",
            &[clinic, pa],
        ),
        ("Organization?_revinclude=Account:owner", &[clinic, acc]),
        ("Organization?_revinclude=*", &[clinic, pa, acc, inv1, inv2]),
        (
            "Organization?_revinclude=Invoice:issuer&_include:iterate=Invoice:subject&_include:iterate=Invoice:recipient",
            &[clinic, inv1, inv2, pa],
        ),
        (
            "Practitioner?_revinclude=Patient:general-practitioner",
            &[clinician, pa],
        ),
        (
            "Practitioner?_revinclude=Invoice:participant",
            &[clinician, inv1, inv2],
        ),
        (
            "Invoice?_include=Invoice:subject&_include=Invoice:recipient&_include=Invoice:account",
            &[inv1, inv2, pa, acc],
        ),
        (
            "Account?_include=Account:subject&_revinclude=Invoice:account",
            &[acc, pa, inv2],
        ),
        (
            "?_type=Organization,Practitioner&_revinclude=*",
            &[clinic, clinician, pa, acc, inv1, inv2],
        ),
    ];
    for (path, expected) in includes {
        let ids = a.ids(path).await;
        assert_only_a(&ids, path);
        let missing: Vec<_> = expected.iter().filter(|id| !ids.contains(**id)).collect();
        assert!(missing.is_empty(), "{path}: lacks A's {missing:?}: {ids:?}");
    }

    // History: nothing of B's, at any level.
    let b_history = a.get("Patient/demo-patient-b/_history").await;
    let none_history = a.get("Patient/no-such-patient/_history").await;
    assert_eq!(
        b_history.status,
        none_history.status,
        "B's history must look like a missing resource's: {} vs {}",
        b_history.describe(),
        none_history.describe()
    );
    if b_history.status == 200 {
        assert!(
            entries(&b_history.json).is_empty(),
            "Patient/demo-patient-b/_history: {}",
            b_history.describe()
        );
    }
    let invoice_history = a.ids("Invoice/_history").await;
    assert_eq!(invoice_history, invoices, "Invoice/_history");
    assert_eq!(
        a.ids("Patient/_history").await,
        set(&["Patient/demo-patient-a"])
    );
    let all_history = a.ids("_history?_count=100").await;
    assert_only_a(&all_history, "_history");
    assert!(all_history.is_superset(&a_resources()), "{all_history:?}");

    // Writes outside the compartment: 403.
    let b_invoice = a_server_read(&server, &kc, "Invoice/demo-patient-b-invoice-1").await;
    let b_patient = a_server_read(&server, &kc, "Patient/demo-patient-b").await;
    let new_invoice = |patient: &str| {
        json!({
            "resourceType": "Invoice",
            "status": "draft",
            "subject": {"reference": format!("Patient/{patient}")},
            "recipient": {"reference": format!("Patient/{patient}")},
        })
    };
    assert_403(
        &a.post("Invoice", &new_invoice(B)).await,
        "A creates an Invoice for B",
    );
    let mut mixed = new_invoice(A);
    mixed["recipient"] = json!({"reference": "Patient/demo-patient-b"});
    mixed["subject"] = json!({"reference": "Patient/demo-alice"});
    assert_403(
        &a.post("Invoice", &mixed).await,
        "A creates an Invoice for Alice, sent to B",
    );
    assert_403(
        &a.post(
            "Invoice",
            &json!({"resourceType": "Invoice", "status": "draft"}),
        )
        .await,
        "A creates an Invoice for nobody",
    );
    let mut changed = b_invoice.clone();
    changed["status"] = json!("cancelled");
    changed["cancelledReason"] = json!("changed by A");
    assert_403(
        &a.put("Invoice/demo-patient-b-invoice-1", &changed).await,
        "A updates B's invoice",
    );
    let mut stolen = b_invoice.clone();
    stolen["subject"] = json!({"reference": "Patient/demo-patient-a"});
    stolen["recipient"] = json!({"reference": "Patient/demo-patient-a"});
    assert_403(
        &a.put("Invoice/demo-patient-b-invoice-1", &stolen).await,
        "A moves B's invoice into her compartment",
    );
    let mut given_away = a_server_read(&server, &kc, "Invoice/demo-patient-a-invoice-1").await;
    given_away["subject"] = json!({"reference": "Patient/demo-patient-b"});
    given_away["recipient"] = json!({"reference": "Patient/demo-patient-b"});
    assert_403(
        &a.put("Invoice/demo-patient-a-invoice-1", &given_away).await,
        "A moves her invoice to B",
    );
    let mut planted = new_invoice(B);
    planted["id"] = json!("planted-for-b");
    assert_403(
        &a.put("Invoice/planted-for-b", &planted).await,
        "A creates an Invoice for B by PUT",
    );
    let mut renamed = b_patient.clone();
    renamed["name"] = json!([{"family": "Changed"}]);
    assert_403(
        &a.put("Patient/demo-patient-b", &renamed).await,
        "A updates Patient B",
    );
    assert_403(
        &a.delete("Invoice/demo-patient-b-invoice-1").await,
        "A deletes B's invoice",
    );
    assert_403(
        &a.delete("Patient/demo-patient-b").await,
        "A deletes Patient B",
    );
    assert_403(
        &a.delete("Account/demo-patient-b-account").await,
        "A deletes B's account",
    );
    // Shared records: no writes at patient level.
    assert_403(
        &a.post(
            "Organization",
            &json!({"resourceType": "Organization", "name": "A's"}),
        )
        .await,
        "A creates an Organization",
    );
    assert_403(
        &a.delete("Organization/demo-clinic").await,
        "A deletes the clinic",
    );
    let b_identifier = "identifier=http://demo-clinic.example/invoices|INV-2024-0102";
    // A conditional create whose criteria match B's invoice neither answers it nor
    // stops A creating her own.
    let resp = a
        .send_with(
            reqwest::Method::POST,
            "Invoice",
            Some(&new_invoice(A)),
            &[("if-none-exist", b_identifier)],
        )
        .await;
    assert_eq!(
        resp.status,
        201,
        "If-None-Exist matching only B's invoice: {}",
        resp.describe()
    );
    assert_eq!(resp.json["subject"]["reference"], "Patient/demo-patient-a");
    let if_none_exist_id = resp.id().unwrap().to_owned();
    let resp = a
        .send_with(
            reqwest::Method::POST,
            "Invoice",
            Some(&new_invoice(B)),
            &[("if-none-exist", b_identifier)],
        )
        .await;
    assert_403(&resp, "If-None-Exist create of an Invoice for B");
    // A conditional delete matches only what A may see: B's invoice survives.
    let resp = a.delete(&format!("Invoice?{b_identifier}")).await;
    assert_eq!(
        resp.status,
        204,
        "conditional delete of B's invoice: {}",
        resp.describe()
    );
    // A conditional update whose criteria match B's invoice (for a caller who could see
    // it): A cannot write it for B, and her own content does not land on B's invoice.
    let mut for_b = b_invoice.clone();
    for_b.as_object_mut().unwrap().remove("id");
    for_b["status"] = json!("cancelled");
    assert_403(
        &a.put(&format!("Invoice?{b_identifier}"), &for_b).await,
        "A's conditional update of B's invoice",
    );
    let mut for_a = for_b.clone();
    for_a["subject"] = json!({"reference": "Patient/demo-patient-a"});
    for_a["recipient"] = json!({"reference": "Patient/demo-patient-a"});
    let resp = a.put(&format!("Invoice?{b_identifier}"), &for_a).await;
    assert_eq!(
        resp.status,
        201,
        "A's conditional update matching only B's invoice creates A's own: {}",
        resp.describe()
    );
    let conditional_id = resp.id().unwrap().to_owned();
    assert_ne!(conditional_id, "demo-patient-b-invoice-1");
    // Her own compartment is hers to write.
    let created = a.post("Invoice", &new_invoice(A)).await;
    assert_eq!(
        created.status,
        201,
        "A creates her invoice: {}",
        created.describe()
    );
    let mut own = a_server_read(&server, &kc, "Invoice/demo-patient-a-invoice-2").await;
    own["status"] = json!("issued");
    let updated = a.put("Invoice/demo-patient-a-invoice-2", &own).await;
    assert_eq!(
        updated.status,
        200,
        "A updates her invoice: {}",
        updated.describe()
    );
    for id in [
        created.id().unwrap(),
        conditional_id.as_str(),
        if_none_exist_id.as_str(),
    ] {
        let deleted = a.delete(&format!("Invoice/{id}")).await;
        assert_eq!(
            deleted.status,
            204,
            "A deletes her invoice: {}",
            deleted.describe()
        );
    }

    // B's data is as it was.
    for (path, before) in [
        ("Invoice/demo-patient-b-invoice-1", &b_invoice),
        ("Patient/demo-patient-b", &b_patient),
    ] {
        let after = a_server_read(&server, &kc, path).await;
        assert_eq!(&after, before, "{path} changed");
        assert_eq!(after["meta"]["versionId"], "1", "{path}");
    }
    for path in [
        "Account/demo-patient-b-account",
        "Invoice/demo-patient-b-invoice-2",
    ] {
        let resp = admin.get(path).await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.describe());
        assert_eq!(resp.version_id(), Some("1"), "{path}");
    }
    assert_eq!(
        admin.get("Invoice/planted-for-b").await.status,
        404,
        "A's PUT for B left nothing"
    );
    let b_invoices = admin.ids("Invoice?subject=Patient/demo-patient-b").await;
    assert_eq!(b_invoices, set(&["Invoice/demo-patient-b-invoice-1"]));

    // B, for symmetry, sees B's.
    let b = Caller::new(
        &server,
        &kc.user_token("patient-b", "launch/patient patient/*.rs")
            .await,
    );
    assert_eq!(
        b.ids("Invoice").await,
        set(&[
            "Invoice/demo-patient-b-invoice-1",
            "Invoice/demo-patient-b-invoice-2"
        ])
    );
    assert_eq!(b.get("Patient/demo-patient-a").await.status, 404);
}

/// A resource as stored, read with a `system/*.rs` token.
async fn a_server_read(server: &TestServer, kc: &Keycloak, path: &str) -> Value {
    let admin = Caller::new(server, &kc.system_token("system/*.rs").await);
    let resp = admin.get(path).await;
    assert_eq!(resp.status, 200, "{path}: {}", resp.describe());
    resp.json
}

#[tokio::test]
async fn v1_patient_scopes_and_a_missing_patient_context() {
    let Some(kc) = keycloak().await else { return };
    let server = kc.server(&[]).await;
    load_demo(&server, &kc).await;

    // patient/*.read (v1 = .rs): reads and searches A's, writes nothing.
    let read = Caller::new(
        &server,
        &kc.user_token("patient-a", "openid launch/patient patient/*.read")
            .await,
    );
    assert_eq!(read.get("Patient/demo-patient-a").await.status, 200);
    assert_eq!(read.get("Patient/demo-patient-b").await.status, 404);
    assert_eq!(
        read.ids("Invoice").await,
        set(&[
            "Invoice/demo-patient-a-invoice-1",
            "Invoice/demo-patient-a-invoice-2"
        ])
    );
    let own = a_server_read(&server, &kc, "Invoice/demo-patient-a-invoice-1").await;
    assert_403(
        &read.put("Invoice/demo-patient-a-invoice-1", &own).await,
        "patient/*.read updates",
    );
    assert_403(
        &read
            .post(
                "Invoice",
                &json!({"resourceType": "Invoice", "status": "draft",
                        "subject": {"reference": "Patient/demo-patient-a"}}),
            )
            .await,
        "patient/*.read creates",
    );

    // patient/*.* (v1 = .cruds): writes A's, not B's.
    let all = Caller::new(
        &server,
        &kc.user_token("patient-a", "launch/patient patient/*.*")
            .await,
    );
    let invoice = |patient: &str| {
        json!({"resourceType": "Invoice", "status": "draft",
               "subject": {"reference": format!("Patient/{patient}")}})
    };
    assert_eq!(all.post("Invoice", &invoice(A)).await.status, 201);
    assert_403(&all.post("Invoice", &invoice(B)).await, "patient/*.* for B");
    assert_eq!(
        all.get("Invoice/demo-patient-b-invoice-1").await.status,
        404
    );

    // patient/ scopes without launch/patient: no patient, nothing granted.
    let token = kc.user_token("patient-a", "openid patient/*.cruds").await;
    assert!(
        claims(&token).get("patient").is_none(),
        "{}",
        claims(&token)
    );
    let nobody = Caller::new(&server, &token);
    for path in [
        "Patient/demo-patient-a",
        "Patient/demo-patient-b",
        "Patient",
        "Invoice",
        "Patient/demo-patient-a/_history",
        "?_type=Patient",
    ] {
        assert_403(
            &nobody.get(path).await,
            &format!("no patient context: GET {path}"),
        );
    }
    assert_403(
        &nobody.post("Invoice", &invoice(A)).await,
        "no patient context: create",
    );
}

/// Chained and reverse-chained criteria on a type that patient/ scopes open entirely
/// (Organization, Practitioner) must not reveal what lies outside the compartment: which
/// patients or invoices exist and what they hold.
#[tokio::test]
async fn criteria_on_shared_records_do_not_reveal_other_patients() {
    let Some(kc) = keycloak().await else { return };
    let server = kc.server(&[]).await;
    load_demo(&server, &kc).await;
    let a = Caller::new(
        &server,
        &kc.user_token("patient-a", "launch/patient patient/*.rs")
            .await,
    );
    // A's own data may be matched...
    assert_eq!(
        a.ids("Organization?_has:Patient:organization:family=Andrews")
            .await,
        set(&["Organization/demo-clinic"])
    );
    // The criteria do discriminate (a name nobody has matches nothing)...
    assert!(
        a.ids("Organization?_has:Patient:organization:family=Nobody")
            .await
            .is_empty()
    );
    // ...but must not reach beyond A's compartment.
    let mut leaks = Vec::new();
    for path in [
        "Organization?_has:Patient:organization:family=Baker",
        "Organization?_has:Invoice:issuer:subject=Patient/demo-patient-b",
        "Organization?_has:Account:owner:subject=Patient/demo-patient-b",
        "Practitioner?_has:Patient:general-practitioner:family=Baker",
    ] {
        let found = a.ids(path).await;
        if !found.is_empty() {
            leaks.push(format!("{path} -> {found:?}"));
        }
    }
    assert!(leaks.is_empty(), "A learns about B through: {leaks:#?}");
}

// --- user/ and system/ -------------------------------------------------------------------

#[tokio::test]
async fn clinicians_and_backend_services_see_every_patient() {
    let Some(kc) = keycloak().await else { return };
    let server = kc.server(&[]).await;
    load_demo(&server, &kc).await;
    let everyone = set(&[
        "Patient/demo-alice",
        "Patient/demo-bob",
        "Patient/demo-patient-a",
        "Patient/demo-patient-b",
    ]);

    // The clinician: user/ scopes.
    let token = kc
        .user_token("clinician", "openid fhirUser user/*.cruds")
        .await;
    assert_eq!(claims(&token)["fhirUser"], "Practitioner/demo-clinician");
    let clinician = Caller::new(&server, &token);
    assert_eq!(clinician.ids("Patient").await, everyone);
    for path in ["Patient/demo-patient-a", "Patient/demo-patient-b"] {
        assert_eq!(clinician.get(path).await.status, 200, "{path}");
    }
    let invoices = clinician.ids("Invoice").await;
    assert!(
        invoices.contains("Invoice/demo-patient-a-invoice-1")
            && invoices.contains("Invoice/demo-patient-b-invoice-1"),
        "{invoices:?}"
    );
    let created = clinician
        .post(
            "Invoice",
            &json!({"resourceType": "Invoice", "status": "draft",
                    "subject": {"reference": "Patient/demo-patient-b"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.describe());
    let reader = Caller::new(&server, &kc.user_token("clinician", "user/*.rs").await);
    assert_eq!(reader.ids("Patient").await, everyone);
    assert_403(
        &reader
            .post("Patient", &json!({"resourceType": "Patient"}))
            .await,
        "user/*.rs creates",
    );

    // A backend service (private_key_jwt): system/*.rs reads everything, writes nothing.
    let backend = Caller::new(&server, &kc.backend_token("system/*.rs").await);
    assert_eq!(claims(&backend.token)["azp"], "ferrum-backend");
    assert_eq!(backend.ids("Patient").await, everyone);
    let system = backend.ids("?_type=Patient,Invoice&_count=100").await;
    assert!(system.is_superset(&everyone), "{system:?}");
    assert!(
        system.contains("Invoice/demo-patient-b-invoice-2")
            && system.contains("Invoice/demo-alice-invoice-1"),
        "{system:?}"
    );
    let history = backend.get("_history").await;
    assert_eq!(history.status, 200, "{}", history.describe());
    assert_eq!(
        backend.get("Invoice/demo-patient-b-invoice-1").await.status,
        200
    );
    assert_403(
        &backend
            .post("Patient", &json!({"resourceType": "Patient"}))
            .await,
        "system/*.rs creates",
    );
    let patient = a_server_read(&server, &kc, "Patient/demo-patient-a").await;
    assert_403(
        &backend.put("Patient/demo-patient-a", &patient).await,
        "system/*.rs updates",
    );
    assert_403(
        &backend.delete("Patient/demo-patient-a").await,
        "system/*.rs deletes",
    );
}

// --- $analytics ------------------------------------------------------------------------

#[tokio::test]
async fn analytics_needs_system_or_user_read_access() {
    let Some(kc) = keycloak().await else { return };
    let server = kc.server(&[]).await;
    let allowed = [
        (
            "ferrum-dev system/*.rs",
            kc.system_token("system/*.rs").await,
        ),
        (
            "ferrum-dev system/*.read",
            kc.system_token("system/*.read").await,
        ),
        ("backend system/*.rs", kc.backend_token("system/*.rs").await),
        (
            "clinician user/*.rs",
            kc.user_token("clinician", "user/*.rs").await,
        ),
    ];
    let refused = [
        (
            "patient-a patient/*.cruds",
            kc.user_token("patient-a", "launch/patient patient/*.cruds")
                .await,
        ),
        (
            "patient-a patient/*.rs",
            kc.user_token("patient-a", "launch/patient patient/*.rs")
                .await,
        ),
        (
            "system/Patient.rs",
            kc.system_token("system/Patient.rs").await,
        ),
        ("system/*.write", kc.system_token("system/*.write").await),
    ];
    for path in ["$analytics", "$analytics.json"] {
        assert_401(&server.get(path).await, &format!("{path} without a token"));
        for (who, token) in &allowed {
            let resp = Caller::new(&server, token).get(path).await;
            assert_eq!(resp.status, 200, "{who}: GET {path}: {}", resp.describe());
            if path == "$analytics" {
                assert_eq!(resp.json["resourceType"], "Bundle", "{who}");
            }
        }
        for (who, token) in &refused {
            assert_403(
                &Caller::new(&server, token).get(path).await,
                &format!("{who}: GET {path}"),
            );
        }
    }
}

// --- discovery -------------------------------------------------------------------------

#[tokio::test]
async fn the_smart_configuration_describes_the_realm() {
    let Some(kc) = keycloak().await else { return };
    let server = kc.server(&[]).await;
    let resp = server
        .get_with(
            ".well-known/smart-configuration",
            &[("accept", "application/json")],
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.describe());
    let media = resp.content_type();
    assert!(
        media == "application/json" || media.starts_with("application/json;"),
        "content type {media:?}"
    );
    let fhir_accept = server
        .get_with(
            ".well-known/smart-configuration",
            &[("accept", "application/fhir+json")],
        )
        .await;
    assert_eq!(fhir_accept.status, 200, "{}", fhir_accept.describe());
    assert!(
        fhir_accept.content_type().starts_with("application/json"),
        "with Accept: application/fhir+json: {:?}",
        fhir_accept.content_type()
    );
    assert_eq!(fhir_accept.json, resp.json);
    let doc = &resp.json;

    assert_eq!(doc["issuer"], kc.issuer.as_str(), "issuer");
    for field in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
    ] {
        assert!(kc.discovery[field].is_string(), "Keycloak has no {field}");
        assert_eq!(doc[field], kc.discovery[field], "{field}");
    }
    assert_eq!(
        doc["code_challenge_methods_supported"],
        json!(["S256"]),
        "code_challenge_methods_supported"
    );
    let list = |field: &str| -> Vec<String> {
        doc[field]
            .as_array()
            .unwrap_or_else(|| panic!("{field} is not a list: {doc}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let contains = |field: &str, wanted: &[&str]| {
        let have = list(field);
        for w in wanted {
            assert!(have.iter().any(|h| h == w), "{field} lacks {w}: {have:?}");
        }
    };
    contains(
        "grant_types_supported",
        &["authorization_code", "client_credentials"],
    );
    contains(
        "token_endpoint_auth_methods_supported",
        &["private_key_jwt"],
    );
    contains(
        "token_endpoint_auth_signing_alg_values_supported",
        &["RS384"],
    );
    contains(
        "capabilities",
        &[
            "launch-standalone",
            "client-public",
            "client-confidential-symmetric",
            "client-confidential-asymmetric",
            "context-standalone-patient",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
            "sso-openid-connect",
        ],
    );
    contains(
        "scopes_supported",
        &[
            "openid",
            "fhirUser",
            "launch/patient",
            "patient/Patient.rs",
            "system/*.rs",
        ],
    );
    contains("response_types_supported", &["code"]);
    // What the server says Keycloak supports, Keycloak supports.
    let keycloak_list = |field: &str| -> Vec<String> {
        kc.discovery[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    for (ours, theirs) in [
        ("grant_types_supported", "grant_types_supported"),
        (
            "token_endpoint_auth_methods_supported",
            "token_endpoint_auth_methods_supported",
        ),
        (
            "token_endpoint_auth_signing_alg_values_supported",
            "token_endpoint_auth_signing_alg_values_supported",
        ),
        (
            "code_challenge_methods_supported",
            "code_challenge_methods_supported",
        ),
    ] {
        let supported = keycloak_list(theirs);
        for value in list(ours) {
            assert!(
                supported.contains(&value),
                "{ours} offers {value}, which Keycloak's {theirs} lacks: {supported:?}"
            );
        }
    }

    // Every scope offered is a client scope of the realm (openid is Keycloak's own).
    let realm_scopes = realm_client_scopes(&kc).await;
    let missing: Vec<String> = list("scopes_supported")
        .into_iter()
        .filter(|s| s != "openid" && !realm_scopes.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "scopes_supported offers scopes the realm lacks: {missing:?}"
    );
    // ...and every SMART resource scope of the realm is offered.
    let offered = list("scopes_supported");
    let not_offered: Vec<&String> = realm_scopes
        .iter()
        .filter(|s| s.starts_with("patient/") || s.starts_with("user/") || s.starts_with("system/"))
        .filter(|s| !offered.contains(s))
        .collect();
    assert!(
        not_offered.is_empty(),
        "realm scopes missing from scopes_supported: {not_offered:?}"
    );

    // The CapabilityStatement says the same (rest.security).
    let metadata = server.get("metadata").await;
    assert_eq!(metadata.status, 200, "{}", metadata.describe());
    let security = &metadata.json["rest"][0]["security"];
    assert_eq!(
        security["service"][0]["coding"][0],
        json!({"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
               "code": "SMART-on-FHIR"}),
        "{security}"
    );
    let uris = security["extension"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
        })
        .unwrap_or_else(|| panic!("no oauth-uris extension: {security}"));
    let uri = |name: &str| {
        uris["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == name)
            .map(|e| e["valueUri"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(uri("authorize"), kc.discovery["authorization_endpoint"]);
    assert_eq!(uri("token"), kc.discovery["token_endpoint"]);
}

/// The names of the realm's client scopes: from Keycloak's admin API, or from the realm
/// file when no administrator token can be had.
async fn realm_client_scopes(kc: &Keycloak) -> BTreeSet<String> {
    let names = |list: &Value| -> BTreeSet<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    match kc.admin_token().await {
        Ok(admin) => {
            let (base, realm) = kc.split_issuer();
            let resp = kc
                .http
                .get(format!("{base}/admin/realms/{realm}/client-scopes"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200, "admin API: client scopes");
            names(&resp.json::<Value>().await.unwrap())
        }
        Err(why) => {
            eprintln!("no admin token ({why}): reading deploy/keycloak/fhir-realm.json");
            names(&realm_file()["clientScopes"])
        }
    }
}
