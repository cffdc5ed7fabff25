//! Search index write path against a real PostgreSQL: the rows a write leaves, the rows a
//! failed write does not leave, and re-indexing (each test gets a fresh database from
//! `#[sqlx::test]`; DATABASE_URL names the server, its role needs CREATEDB).

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use fhir_core::search::{Keeping, Registry};
use fhir_core::{Id, ResourceType, VersionId};
use serde_json::{Value, json};
use sqlx::PgPool;
use store::{Claim, Created, ReferentialIntegrity, Store, StoreError};

/// A store on `pool` that does not check references: these resources name resources that
/// are not stored (`Organization/o1`), which is beside the point of an index test.
fn unchecked(pool: &PgPool) -> Store {
    Store::from_pool(pool.clone()).with_referential_integrity(ReferentialIntegrity {
        writes: false,
        deletes: false,
    })
}

fn id(s: &str) -> Id {
    s.parse().unwrap_or_else(|_| panic!("{s} is a valid id"))
}

/// JSON from text, so that decimals keep their digits (`119.00`).
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn patient() -> Value {
    parse(
        r#"{"resourceType": "Patient",
            "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                                     "text": "Medical record"},
                            "system": "urn:oid:1.2.3", "value": "MRN-1"}],
            "active": true,
            "name": [{"family": "García", "given": ["José", "Ana"]}],
            "telecom": [{"system": "email", "value": "Jose@Example.org"}],
            "gender": "male",
            "birthDate": "1970-03",
            "address": [{"city": "Sevilla", "country": "ES"}],
            "managingOrganization": {"reference": "Organization/o1"},
            "generalPractitioner": [{"reference": "http://other.example/fhir/Practitioner/d1"}]}"#,
    )
}

fn account() -> Value {
    parse(
        r#"{"resourceType": "Account", "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PBILLACCT"}],
                     "text": "patient billing"},
            "name": "Main account",
            "subject": [{"reference": "Patient/p1"}],
            "servicePeriod": {"start": "2020-01-01"},
            "owner": {"reference": "Organization/o1"}}"#,
    )
}

fn invoice() -> Value {
    parse(
        r#"{"resourceType": "Invoice", "status": "issued",
            "identifier": [{"system": "http://example.org/invoices", "value": "INV-1"}],
            "subject": {"reference": "Patient/p1"},
            "account": {"reference": "Account/a1"},
            "date": "2021-06-15T10:30:00+02:00",
            "totalNet": {"value": 100.00, "currency": "EUR"},
            "totalGross": {"value": 119.00, "currency": "EUR"},
            "lineItem": [{"chargeItemCodeableConcept": {"coding": [{"system": "http://example.org/charges", "code": "C1"}]}}]}"#,
    )
}

fn named(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family}]})
}

fn email(value: &str) -> Vec<Claim> {
    vec![Claim {
        rule: "Patient.email",
        value: value.into(),
        expression: "Patient.telecom[0].value".into(),
    }]
}

/// Every index row as `Type/id code table (columns)`, sorted, with the reference record's
/// rows (code `?`, table `record`); duplicates are kept, so a row written twice shows. A
/// string or token value is one row per lexeme, `Type/id code term <mark><value>`, its
/// separators shown as `¦` (`family term :garcia¦García`, `gender term =male¦http://...`). A lexeme of a part that a built-in
/// parameter is kept as (`name`'s family names) shows under that parameter's code
/// (`family`); a phonetic code kept with a value, under the phonetic parameter's
/// (`phonetic term ~g620`).
async fn rows(pool: &PgPool) -> Vec<String> {
    const SOUND: i16 = -1;
    let kept: Vec<String> = Registry::builtin()
        .unwrap_or_else(|e| panic!("{e}"))
        .all()
        .iter()
        .filter_map(|p| {
            let (owner, keeping) = p.kept_in()?;
            let part = match keeping {
                Keeping::Part(part) => part.code(),
                Keeping::Sound => SOUND,
            };
            Some(format!(
                "('{}', '{owner}', {part}, '{}')",
                p.base(),
                p.code()
            ))
        })
        .collect();
    let rows: Vec<String> = sqlx::query_scalar(&format!(
        "with x as (
             select res_key, m[1]::int as param, coalesce(m[2]::int2, {SOUND}) as part, 'term' as tab,
                 m[3] || translate(m[4], E'\\x01', '¦') as val
                 from (select res_key, regexp_match(l, '^([0-9]+)(?:\\.([0-9]+))?([:=@#~])(.*)$') as m
                       from search_terms, unnest(tsvector_to_array(terms)) l) t
             union all select res_key, param, 0, 'date', row(low at time zone 'UTC', high at time zone 'UTC')::text from search_date
             union all select res_key, param, 0, 'reference', row(target_type, target_id, target_version, url,
                                                               identifier_system, identifier_value)::text from search_reference
             union all select res_key, param, 0, 'quantity', row(value, comparator, unit, system, code)::text from search_quantity
             union all select res_key, param, 0, 'number', row(value)::text from search_number
             union all select res_key, param, 0, 'uri', row(uri)::text from search_uri
             union all select res_key, param, 0, 'composite', components::text from search_composite
             union all select res_key, null, 0, 'record', row(target_type, target_id)::text from resource_references
         ), kept(base, owner, part, code) as (values {})
         select coalesce(r.res_type || '/' || r.id, '?') || ' ' || coalesce(k.code, p.code, '?') || ' '
                || x.tab || ' ' || x.val
         from x left join resources r on r.key = x.res_key left join search_params p on p.id = x.param
              left join kept k on k.base = r.res_type and k.owner = p.code and k.part = x.part
         order by 1",
        kept.join(", "),
    ))
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    rows
}

/// The rows of one resource (`Patient/p1`).
async fn rows_of(pool: &PgPool, resource: &str) -> Vec<String> {
    let prefix = format!("{resource} ");
    rows(pool)
        .await
        .into_iter()
        .filter(|row| row.starts_with(&prefix))
        .collect()
}

fn assert_has(rows: &[String], expected: &[&str]) {
    for row in expected {
        assert!(
            rows.iter().any(|r| r == row),
            "missing row {row}; rows:\n{}",
            rows.join("\n")
        );
    }
}

async fn put(store: &Store, rtype: ResourceType, name: &str, resource: Value) {
    let result = store.update(rtype, &id(name), resource, None, &[]).await;
    assert!(result.is_ok(), "{result:?}");
}

/// The built-in definitions read from `fhir-profiles/`, changed by `edit`, as a registry.
fn registry_with(edit: impl FnOnce(&mut Vec<Value>)) -> &'static Registry {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fhir-profiles");
    let mut definitions = Vec::new();
    for dir in ["SearchParameter", "custom/SearchParameter"] {
        let entries = std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{e}"));
        for entry in entries {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
            definitions.push(parse(&text));
        }
    }
    edit(&mut definitions);
    let registry = Registry::from_definitions(&definitions).unwrap_or_else(|e| panic!("{e}"));
    Box::leak(Box::new(registry))
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_patient_is_indexed_by_typed_rows(pool: PgPool) {
    let store = unchecked(&pool);
    put(&store, ResourceType::Patient, "p1", patient()).await;
    let rows = rows_of(&pool, "Patient/p1").await;
    assert_has(
        &rows,
        &[
            // `name`'s rows, each with its part: `family` and `given` have none of their own.
            "Patient/p1 family term :garcia¦García",
            "Patient/p1 given term :jose¦José",
            "Patient/p1 given term :ana¦Ana",
            "Patient/p1 phonetic term ~g620",
            "Patient/p1 address-city term :sevilla¦Sevilla",
            "Patient/p1 address-country term :es¦ES",
            // The identifier's value with its type coding, for `:of-type` too.
            "Patient/p1 identifier term =MRN-1¦urn:oid:1.2.3",
            "Patient/p1 identifier term @urn:oid:1.2.3",
            "Patient/p1 identifier term #MR¦MRN-1¦http://terminology.hl7.org/CodeSystem/v2-0203",
            "Patient/p1 identifier term :medical record",
            "Patient/p1 gender term =male¦http://hl7.org/fhir/administrative-gender",
            "Patient/p1 gender term @http://hl7.org/fhir/administrative-gender",
            "Patient/p1 active term =true¦",
            "Patient/p1 deceased term =false¦",
            // `telecom`'s row, of system email.
            "Patient/p1 email term =Jose@Example.org¦",
            "Patient/p1 birthdate date (\"1970-03-01 00:00:00\",\"1970-04-01 00:00:00\")",
            "Patient/p1 organization reference (Organization,o1,,,,)",
            "Patient/p1 general-practitioner reference \
             (Practitioner,d1,,http://other.example/fhir/Practitioner/d1,,)",
            "Patient/p1 ? record (Organization,o1)",
        ],
    );
    // Another server's resource is no local reference.
    assert!(
        !rows.iter().any(|r| r.contains("record (Practitioner")),
        "{rows:?}"
    );
    // `_id` and `_lastUpdated` are searched on the resource row: no index rows.
    assert!(
        !rows
            .iter()
            .any(|r| r.contains(" _id ") || r.contains(" _lastUpdated ")),
        "{rows:?}"
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_account_and_an_invoice_are_indexed_by_typed_rows(pool: PgPool) {
    let store = unchecked(&pool);
    put(&store, ResourceType::Account, "a1", account()).await;
    put(&store, ResourceType::Invoice, "i1", invoice()).await;
    assert_has(
        &rows_of(&pool, "Account/a1").await,
        &[
            "Account/a1 status term =active¦http://hl7.org/fhir/account-status",
            "Account/a1 status term @http://hl7.org/fhir/account-status",
            "Account/a1 type term =PBILLACCT¦http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "Account/a1 type term @http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "Account/a1 type term :patient billing",
            "Account/a1 name term :main account¦Main account",
            "Account/a1 subject reference (Patient,p1,,,,)",
            "Account/a1 patient reference (Patient,p1,,,,)",
            "Account/a1 owner reference (Organization,o1,,,,)",
            "Account/a1 period date (\"2020-01-01 00:00:00\",infinity)",
        ],
    );
    assert_has(
        &rows_of(&pool, "Invoice/i1").await,
        &[
            "Invoice/i1 status term =issued¦http://hl7.org/fhir/invoice-status",
            "Invoice/i1 status term @http://hl7.org/fhir/invoice-status",
            "Invoice/i1 identifier term =INV-1¦http://example.org/invoices",
            "Invoice/i1 identifier term @http://example.org/invoices",
            "Invoice/i1 subject reference (Patient,p1,,,,)",
            "Invoice/i1 patient reference (Patient,p1,,,,)",
            "Invoice/i1 account reference (Account,a1,,,,)",
            "Invoice/i1 date date (\"2021-06-15 08:30:00\",\"2021-06-15 08:30:01\")",
            "Invoice/i1 totalnet quantity (100.00,,,urn:iso:std:iso:4217,EUR)",
            "Invoice/i1 totalgross quantity (119.00,,,urn:iso:std:iso:4217,EUR)",
            "Invoice/i1 line-item-code term =C1¦http://example.org/charges",
            "Invoice/i1 line-item-code term @http://example.org/charges",
        ],
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn numbers_uris_and_composites_have_their_tables(pool: PgPool) {
    let registry = registry_with(|definitions| {
        definitions.push(json!({
            "resourceType": "SearchParameter", "url": "urn:test:Patient-birth-order",
            "status": "active", "code": "birth-order", "base": ["Patient"], "type": "number",
            "expression": "Patient.multipleBirth"
        }));
    });
    let store = unchecked(&pool).with_registry(registry);
    let mut twin = named("Twin");
    twin["multipleBirthInteger"] = parse("2");
    twin["meta"] = json!({"profile": ["http://example.org/StructureDefinition/p"]});
    put(&store, ResourceType::Patient, "t1", twin).await;
    // A boolean is no number: not indexed, and no reason to refuse the write.
    let mut single = named("Single");
    single["multipleBirthBoolean"] = json!(false);
    put(&store, ResourceType::Patient, "s1", single).await;
    let group = json!({"resourceType": "Group", "type": "person", "actual": true,
        "characteristic": [{"code": {"coding": [{"system": "http://example.org/c", "code": "colour"}]},
                            "valueCodeableConcept": {"coding": [{"code": "blue"}]},
                            "exclude": false}]});
    put(&store, ResourceType::Group, "g1", group).await;

    let all = rows(&pool).await;
    assert_has(
        &all,
        &[
            "Patient/t1 birth-order number (2)",
            "Patient/t1 _profile uri (http://example.org/StructureDefinition/p)",
            "Group/g1 characteristic-value composite \
             {\"0\": {\"code\": \"colour\", \"system\": \"http://example.org/c\"}, \"1\": {\"code\": \"blue\"}}",
        ],
    );
    assert!(!all.iter().any(|r| r.starts_with("Patient/s1 birth-order")));
}

/// The lexemes are sent in PostgreSQL's binary format: quotes, backslashes, spaces, colons
/// and accents arrive as written, and are found.
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn lexemes_arrive_as_written(pool: PgPool) {
    let store = unchecked(&pool);
    let family = "O'Brien \\ Dü:Pont*";
    let resource = json!({"resourceType": "Patient", "name": [{"family": family}],
        "identifier": [{"system": "urn:a b", "value": "x'\\y"}]});
    put(&store, ResourceType::Patient, "q", resource).await;
    assert_has(
        &rows(&pool).await,
        &[
            "Patient/q family term :o'brien \\ du:pont*¦O'Brien \\ Dü:Pont*",
            "Patient/q identifier term =x'\\y¦urn:a b",
            "Patient/q identifier term @urn:a b",
        ],
    );
    assert_eq!(
        found(&store, "family:exact=O'Brien \\ Dü:Pont*").await,
        ["q"]
    );
    assert_eq!(found(&store, "family=o'brien \\ du").await, ["q"]);
    assert_eq!(found(&store, "identifier=urn:a b|x'\\y").await, ["q"]);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn long_values_are_cut_and_stay_distinct(pool: PgPool) {
    let store = unchecked(&pool);
    // Far beyond what a lexeme holds (2,046 bytes), in 2-byte characters.
    let family = "é".repeat(5_000);
    let value = "7".repeat(10_000);
    let long = json!({"resourceType": "Patient", "name": [{"family": family}],
        "identifier": [{"system": "urn:x", "value": value}]});
    put(&store, ResourceType::Patient, "long", long).await;
    let other = json!({"resourceType": "Patient",
        "identifier": [{"system": "urn:x", "value": format!("{}8", "7".repeat(9_999))}]});
    put(&store, ResourceType::Patient, "other", other).await;
    let (longest, identifiers): (i32, i64) = sqlx::query_as(
        "select max(octet_length(l)), count(distinct l) filter (where l like '%=7%')
         from search_terms, unnest(tsvector_to_array(terms)) l",
    )
    .fetch_one(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(longest <= 2_046, "{longest}");
    // Values alike in their first two thousand bytes are still two values.
    assert_eq!(identifiers, 2);

    // Searches with values longer than a lexeme: equality exact, a long prefix found.
    let query = format!("identifier=urn:x|{value}");
    assert_eq!(found(&store, &query).await, ["long"]);
    let prefix = "é".repeat(3_000);
    assert_eq!(found(&store, &format!("family={prefix}")).await, ["long"]);
    assert_eq!(
        found(&store, &format!("family:exact={family}")).await,
        ["long"]
    );
    assert!(
        found(&store, &format!("family:exact={family}x"))
            .await
            .is_empty()
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_update_replaces_the_rows_and_a_delete_removes_them(pool: PgPool) {
    let store = unchecked(&pool);
    put(&store, ResourceType::Patient, "p", named("Alpha")).await;
    put(&store, ResourceType::Patient, "p", named("Beta")).await;
    let after_update = rows_of(&pool, "Patient/p").await;
    assert_has(&after_update, &["Patient/p family term :beta¦Beta"]);
    assert!(!after_update.iter().any(|r| r.contains("lpha")));
    let deceased = after_update
        .iter()
        .filter(|r| r.contains(" deceased term ="))
        .count();
    assert_eq!(deceased, 1, "{after_update:?}");

    // The rows of an update are those of a fresh write of the same content.
    put(&store, ResourceType::Patient, "q", named("Beta")).await;
    let fresh = rows_of(&pool, "Patient/q").await;
    let shape = |rows: &[String], id: &str| -> Vec<String> {
        rows.iter()
            .filter(|r| !r.contains(" _lastUpdated ") && !r.contains(" _id "))
            .map(|r| r.replacen(&format!("Patient/{id} "), "", 1))
            .collect()
    };
    assert_eq!(shape(&after_update, "p"), shape(&fresh, "q"));

    let deleted = store.delete(ResourceType::Patient, &id("p")).await;
    assert!(matches!(deleted, Ok(Some(_))), "{deleted:?}");
    assert!(rows_of(&pool, "Patient/p").await.is_empty());
    assert!(!rows_of(&pool, "Patient/q").await.is_empty());

    // Brought back, it is indexed again.
    put(&store, ResourceType::Patient, "p", named("Gamma")).await;
    assert_has(
        &rows_of(&pool, "Patient/p").await,
        &["Patient/p family term :gamma¦Gamma"],
    );
}

/// What `resources.index_tables` records for `Patient/id`.
async fn recorded(pool: &PgPool, id: &str) -> Option<i32> {
    sqlx::query_scalar("select index_tables from resources where res_type = 'Patient' and id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The tables of `rows` (as [`rows`] shows them), sorted, once each.
fn tables(rows: &[String]) -> Vec<String> {
    let mut tables: Vec<String> = rows
        .iter()
        .filter_map(|r| r.split(' ').nth(2).map(str::to_owned))
        .collect();
    tables.dedup();
    tables.sort();
    tables.dedup();
    tables
}

/// An update replaces rows in the tables its new version has rows in and in those the
/// current version recorded, and leaves the others alone: rows in a table only the current
/// version had are gone too, whether the current version recorded its tables (a write) or
/// not (a re-index, or a row written before the record).
#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_update_empties_the_tables_only_the_current_version_had(pool: PgPool) {
    let store = unchecked(&pool);
    let full = ["date", "record", "reference", "term"];
    let named_only = ["term"];
    put(&store, ResourceType::Patient, "p1", patient()).await;
    assert_eq!(tables(&rows_of(&pool, "Patient/p1").await), full);
    // terms, date, reference and the reference record.
    assert_eq!(recorded(&pool, "p1").await, Some(0b1000_0111));

    put(&store, ResourceType::Patient, "p1", named("Alpha")).await;
    let rows = rows_of(&pool, "Patient/p1").await;
    assert_eq!(tables(&rows), named_only, "{rows:?}");
    assert_eq!(recorded(&pool, "p1").await, Some(0b1));

    // Not recorded: every table is looked in.
    put(&store, ResourceType::Patient, "p1", patient()).await;
    let cleared = sqlx::query("update resources set index_tables = null where id = 'p1'")
        .execute(&pool)
        .await;
    assert!(cleared.is_ok(), "{cleared:?}");
    put(&store, ResourceType::Patient, "p1", named("Beta")).await;
    let rows = rows_of(&pool, "Patient/p1").await;
    assert_eq!(tables(&rows), named_only, "{rows:?}");
    assert_has(&rows, &["Patient/p1 family term :beta¦Beta"]);
    assert_eq!(recorded(&pool, "p1").await, Some(0b1));

    // A re-index clears the record; the next update still empties what the rows were in.
    put(&store, ResourceType::Patient, "p2", patient()).await;
    let reindexed = store.reindex_all().await;
    assert!(reindexed.is_ok(), "{reindexed:?}");
    assert_eq!(recorded(&pool, "p2").await, None);
    assert_eq!(tables(&rows_of(&pool, "Patient/p2").await), full);
    put(&store, ResourceType::Patient, "p2", named("Gamma")).await;
    assert_eq!(tables(&rows_of(&pool, "Patient/p2").await), named_only);

    // A delete leaves no rows (its record stays, naming tables that may hold some); brought
    // back, it has its rows again.
    let deleted = store.delete(ResourceType::Patient, &id("p2")).await;
    assert!(matches!(deleted, Ok(Some(_))), "{deleted:?}");
    assert!(rows_of(&pool, "Patient/p2").await.is_empty());
    assert_eq!(recorded(&pool, "p2").await, Some(0b1));
    put(&store, ResourceType::Patient, "p2", patient()).await;
    assert_eq!(tables(&rows_of(&pool, "Patient/p2").await), full);
    assert_eq!(recorded(&pool, "p2").await, Some(0b1000_0111));

    // A resource with no rows at all records no table, and is deleted all the same.
    let bare = json!({"resourceType": "Organization"});
    put(&store, ResourceType::Organization, "o-bare", bare).await;
    assert!(rows_of(&pool, "Organization/o-bare").await.is_empty());
    let deleted = store
        .delete(ResourceType::Organization, &id("o-bare"))
        .await;
    assert!(matches!(deleted, Ok(Some(_))), "{deleted:?}");
}

/// Where each index row of `Type/id` is stored (`table ctid`): a row rewritten moves.
async fn places_of(pool: &PgPool, rtype: &str, id: &str) -> Vec<String> {
    let tables = [
        "search_terms",
        "search_date",
        "search_reference",
        "search_quantity",
        "resource_references",
    ];
    let union: Vec<String> = tables
        .iter()
        .map(|t| {
            format!("select '{t} ' || x.ctid::text as place from {t} x where x.res_key = r.key")
        })
        .collect();
    sqlx::query_scalar(&format!(
        "select place from resources r, lateral ({}) as places
         where r.res_type = $1 and r.id = $2 order by 1",
        union.join(" union all ")
    ))
    .bind(rtype)
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn an_update_writes_only_the_rows_that_changed(pool: PgPool) {
    let store = unchecked(&pool);
    put(&store, ResourceType::Patient, "p", patient()).await;
    put(&store, ResourceType::Invoice, "i", invoice()).await;
    let patient_places = places_of(&pool, "Patient", "p").await;
    let invoice_places = places_of(&pool, "Invoice", "i").await;

    // The same content again: every row stays where it is.
    put(&store, ResourceType::Patient, "p", patient()).await;
    assert_eq!(places_of(&pool, "Patient", "p").await, patient_places);

    // One given name changed: its row is replaced, the others stay.
    let mut renamed = patient();
    renamed["name"][0]["given"][1] = json!("Eva");
    put(&store, ResourceType::Patient, "p", renamed.clone()).await;
    let after = places_of(&pool, "Patient", "p").await;
    let moved = after.iter().filter(|p| !patient_places.contains(p)).count();
    assert_eq!(moved, 1, "{patient_places:?} -> {after:?}");
    assert_eq!(after.len(), patient_places.len());

    // A decimal written with other digits is a changed value (1.5 is not 1.50 to a search).
    let mut reworded = invoice();
    reworded["totalGross"]["value"] = parse("119.0");
    put(&store, ResourceType::Invoice, "i", reworded.clone()).await;
    let after = places_of(&pool, "Invoice", "i").await;
    let moved = after.iter().filter(|p| !invoice_places.contains(p)).count();
    assert_eq!(moved, 1, "{invoice_places:?} -> {after:?}");
    assert_has(
        &rows_of(&pool, "Invoice/i").await,
        &["Invoice/i totalgross quantity (119.0,,,urn:iso:std:iso:4217,EUR)"],
    );

    // The rows are those of a fresh write of the same content.
    put(&store, ResourceType::Patient, "q", renamed).await;
    put(&store, ResourceType::Invoice, "j", reworded).await;
    let shape = |rows: Vec<String>, from: &str| -> Vec<String> {
        rows.iter()
            .filter(|r| !r.contains(" _lastUpdated ") && !r.contains(" _id "))
            .map(|r| r.replacen(from, "", 1))
            .collect()
    };
    assert_eq!(
        shape(rows_of(&pool, "Patient/p").await, "Patient/p "),
        shape(rows_of(&pool, "Patient/q").await, "Patient/q ")
    );
    assert_eq!(
        shape(rows_of(&pool, "Invoice/i").await, "Invoice/i "),
        shape(rows_of(&pool, "Invoice/j").await, "Invoice/j ")
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_create_is_indexed_in_its_statement(pool: PgPool) {
    let store = unchecked(&pool);
    let created = store
        .create(ResourceType::Patient, named("Delta"), &[], None)
        .await;
    let Ok(Created::New(stored)) = created else {
        panic!("{created:?}")
    };
    assert_has(
        &rows_of(&pool, &format!("Patient/{}", stored.id)).await,
        &[&format!("Patient/{} family term :delta¦Delta", stored.id)],
    );

    // A conditional create writes its rows in its transaction; a match writes none.
    let mut identified = named("Epsilon");
    identified["identifier"] = json!([{"system": "urn:x", "value": "1"}]);
    let condition = support::Condition::new(ResourceType::Patient, "identifier=urn:x|1");
    let first = store
        .create(
            ResourceType::Patient,
            identified.clone(),
            &[],
            Some(condition.get()),
        )
        .await;
    let Ok(Created::New(first)) = first else {
        panic!("{first:?}")
    };
    let before = rows(&pool).await;
    assert_has(
        &before,
        &[
            &format!("Patient/{} identifier term =1¦urn:x", first.id),
            &format!("Patient/{} identifier term @urn:x", first.id),
        ],
    );
    let second = store
        .create(
            ResourceType::Patient,
            identified,
            &[],
            Some(condition.get()),
        )
        .await;
    assert!(matches!(second, Ok(Created::Existing { .. })), "{second:?}");
    assert_eq!(rows(&pool).await, before);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn failed_writes_leave_no_rows(pool: PgPool) {
    let store = unchecked(&pool);
    let holder = store
        .update(
            ResourceType::Patient,
            &id("holder"),
            named("Holder"),
            None,
            &email("x@y.org"),
        )
        .await;
    assert!(holder.is_ok(), "{holder:?}");
    put(&store, ResourceType::Patient, "other", named("Other")).await;
    let before = rows(&pool).await;

    // A create whose claim is taken (one statement).
    let create = store
        .create(ResourceType::Patient, named("Dup"), &email("x@y.org"), None)
        .await;
    assert!(
        matches!(create, Err(StoreError::Duplicate { .. })),
        "{create:?}"
    );
    // An update-as-create whose claim is taken.
    let new = store
        .update(
            ResourceType::Patient,
            &id("new"),
            named("Dup"),
            None,
            &email("x@y.org"),
        )
        .await;
    assert!(matches!(new, Err(StoreError::Duplicate { .. })), "{new:?}");
    // An update whose claim is taken: its index rows were written, then rolled back.
    let taken = store
        .update(
            ResourceType::Patient,
            &id("other"),
            named("Dup"),
            None,
            &email("x@y.org"),
        )
        .await;
    assert!(
        matches!(taken, Err(StoreError::Duplicate { .. })),
        "{taken:?}"
    );
    // An update that names a stale version.
    let stale = store
        .update(
            ResourceType::Patient,
            &id("other"),
            named("Dup"),
            Some(VersionId::new(7)),
            &[],
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::VersionConflict { .. })),
        "{stale:?}"
    );

    assert_eq!(rows(&pool).await, before);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn reindex_rebuilds_exactly_the_rows_of_a_fresh_write(pool: PgPool) {
    let store = unchecked(&pool);
    put(&store, ResourceType::Patient, "p1", patient()).await;
    put(&store, ResourceType::Account, "a1", account()).await;
    put(&store, ResourceType::Invoice, "i1", invoice()).await;
    let fresh = rows(&pool).await;

    // The first run records the definitions of every type; it changes no row.
    let first = store
        .reindex_stale()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first.resources, 3);
    assert_eq!(rows(&pool).await, fresh);
    let again = store
        .reindex_stale()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.types.is_empty(), "{again:?}");

    // Patient's definitions "changed", and its rows are off: lost, stale, doubled.
    sqlx::raw_sql(
        "update search_index_state set fingerprint = 'older definitions' where res_type = 'Patient';
         update search_terms set terms = terms || array_to_tsvector(array['0.0=stale\x01'])
             where res_key in (select key from resources where res_type = 'Patient');
         insert into search_terms select * from search_terms;
         insert into search_date select * from search_date;",
    )
    .execute(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stale = store
        .reindex_stale()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stale.types, [ResourceType::Patient]);
    assert_eq!(stale.resources, 1);
    let patient_rows = |rows: Vec<String>| -> Vec<String> {
        rows.into_iter()
            .filter(|r| r.starts_with("Patient/"))
            .collect()
    };
    assert_eq!(patient_rows(rows(&pool).await), patient_rows(fresh.clone()));

    // `fhir-server reindex` rebuilds every type.
    let all = store.reindex_all().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.types.len(), ResourceType::ALL.len());
    assert_eq!(rows(&pool).await, fresh);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn changed_definitions_are_reindexed_like_fresh_writes(pool: PgPool) {
    let without_phonetic = registry_with(|definitions| {
        definitions
            .retain(|d| d["url"] != "http://hl7.org/fhir/SearchParameter/individual-phonetic");
    });
    let before = unchecked(&pool).with_registry(without_phonetic);
    put(&before, ResourceType::Patient, "p1", patient()).await;
    put(&before, ResourceType::Account, "a1", account()).await;
    assert!(
        before
            .reindex_stale()
            .await
            .is_ok_and(|r| r.types.len() == ResourceType::ALL.len())
    );
    assert!(
        !rows_of(&pool, "Patient/p1")
            .await
            .iter()
            .any(|r| r.contains(" phonetic "))
    );

    // A server with the built-in definitions re-indexes the types they changed.
    let after = unchecked(&pool);
    let reindexed = after
        .reindex_stale()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reindexed.types,
        [ResourceType::Patient, ResourceType::Practitioner]
    );
    let reindexed_rows = rows_of(&pool, "Patient/p1").await;
    assert_has(&reindexed_rows, &["Patient/p1 phonetic term ~g620"]);

    // Exactly the rows a write of the same content gives (but for its new lastUpdated).
    put(&after, ResourceType::Patient, "p1", patient()).await;
    let written_rows = rows_of(&pool, "Patient/p1").await;
    let without_last_updated = |rows: Vec<String>| -> Vec<String> {
        rows.into_iter()
            .filter(|r| !r.contains(" _lastUpdated "))
            .collect()
    };
    assert_eq!(
        without_last_updated(reindexed_rows),
        without_last_updated(written_rows)
    );
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn reindex_racing_with_writes_leaves_the_rows_of_the_current_versions(pool: PgPool) {
    let store = unchecked(&pool);
    const PATIENTS: usize = 600;
    for n in 0..PATIENTS {
        put(&store, ResourceType::Patient, &format!("p{n}"), named("v0")).await;
    }
    // Rounds of concurrent updates and deletes (revived by the next update), over every
    // part of the key range, until the re-indexes are over.
    let reindexing = AtomicBool::new(true);
    let writes = async {
        let mut round = 0;
        while reindexing.load(Ordering::Relaxed) || round < 3 {
            round += 1;
            let batch = (0..PATIENTS).filter(|n| n % 7 == round % 7).map(|n| {
                let store = store.clone();
                async move {
                    let p = id(&format!("p{n}"));
                    if (n / 7 + round) % 5 == 0 {
                        store.delete(ResourceType::Patient, &p).await.map(|_| ())
                    } else {
                        let family = format!("v{round}");
                        store
                            .update(ResourceType::Patient, &p, named(&family), None, &[])
                            .await
                            .map(|_| ())
                    }
                }
            });
            for result in futures::future::join_all(batch).await {
                assert!(result.is_ok(), "{result:?}");
            }
        }
        round
    };
    let reindexes = async {
        for _ in 0..3 {
            let result = store.reindex_all().await;
            assert!(result.is_ok(), "{result:?}");
        }
        reindexing.store(false, Ordering::Relaxed);
    };
    let (rounds, ()) = futures::join!(writes, reindexes);
    assert!(rounds > 3, "the writes raced with the re-indexes");

    // Each patient has the family of its current version, once, or no rows when deleted.
    let current: Vec<(String, bool, Option<String>)> =
        sqlx::query_as("select id, deleted, content -> 'name' -> 0 ->> 'family' from resources")
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let all = rows(&pool).await;
    for (id, deleted, family) in current {
        let prefix = format!("Patient/{id} ");
        let families: Vec<&String> = all
            .iter()
            .filter(|r| r.starts_with(&prefix) && r.contains(" family "))
            .collect();
        match (deleted, family) {
            (true, _) => assert!(!all.iter().any(|r| r.starts_with(&prefix)), "{id}"),
            (false, Some(family)) => assert_eq!(
                families,
                [&format!(
                    "{prefix}family term :{}¦{family}",
                    family.to_lowercase()
                )]
            ),
            (false, None) => panic!("{id} has no family"),
        }
    }
    // And a re-index now, with nothing racing, changes nothing.
    assert!(store.reindex_all().await.is_ok());
    assert_eq!(rows(&pool).await, all);
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn parameter_ids_are_stable(pool: PgPool) {
    let ids = |pool: PgPool| async move {
        let store = unchecked(&pool);
        put(&store, ResourceType::Patient, "p", named("Same")).await;
        let ids: Vec<(i32, String, String)> =
            sqlx::query_as("select id, res_type, code from search_params order by id")
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        ids
    };
    let first = ids(pool.clone()).await;
    assert!(
        first
            .iter()
            .any(|(_, t, c)| t == "Invoice" && c == "line-item-code")
    );
    // Every type has the common parameters, each its own id (but those searched on the
    // resource row).
    assert_eq!(
        first.iter().filter(|(_, _, c)| c == "_tag").count(),
        ResourceType::ALL.len()
    );
    assert!(!first.iter().any(|(_, _, c)| c == "_lastUpdated"));
    assert_eq!(ids(pool).await, first);
}

/// The ids a search of Patients finds.
async fn found(store: &Store, query: &str) -> Vec<String> {
    let page = store
        .search(&support::search(Some(ResourceType::Patient), query))
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    page.matches.iter().map(|m| m.id.clone()).collect()
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn a_resource_with_very_many_values_is_searched_across_its_rows(pool: PgPool) {
    let store = unchecked(&pool);
    // About 1.7 MB of lexemes (each name normalized and as written): more than one
    // tsvector holds.
    let given: Vec<String> = (0..1_500)
        .map(|n| format!("Name{n:04}{}", "x".repeat(500)))
        .collect();
    let many = json!({"resourceType": "Patient", "active": true,
        "name": [{"family": "Zyzzyva", "given": given}]});
    put(&store, ResourceType::Patient, "many", many).await;
    put(&store, ResourceType::Patient, "other", named("Smith")).await;
    let rows: i64 = sqlx::query_scalar(
        "select count(*) from search_terms t join resources r on r.key = t.res_key
         where r.id = 'many'",
    )
    .fetch_one(&pool)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(rows >= 3, "{rows} rows");

    for query in [
        "given=name0000",
        "given=name1499",
        "given:exact=Name0750xxx",
        "family=zyz",
        "active=true&given=name1499",
        "phonetic=Zyzzyva&given=name0001",
    ] {
        let expected: &[&str] = if query.contains(":exact") {
            &[]
        } else {
            &["many"]
        };
        assert_eq!(found(&store, query).await, expected, "{query}");
    }
    let exact = format!("given:exact=Name0750{}", "x".repeat(500));
    assert_eq!(found(&store, &exact).await, ["many"]);
    assert_eq!(
        found(&store, "given:missing=false&family=zyz").await,
        ["many"]
    );
    assert_eq!(found(&store, "given:missing=true").await, ["other"]);
    assert_eq!(found(&store, "active:not=true").await, ["other"]);
    // An update to a few values rewrites the rows; a delete removes them all.
    put(&store, ResourceType::Patient, "many", named("Alpha")).await;
    assert!(found(&store, "given=name1499").await.is_empty());
    assert_eq!(found(&store, "family=alpha").await, ["many"]);
    let deleted = store.delete(ResourceType::Patient, &id("many")).await;
    assert!(matches!(deleted, Ok(Some(_))), "{deleted:?}");
    assert!(rows_of(&pool, "Patient/many").await.is_empty());
}
