//! The validator against the official R4 examples (package `hl7.fhir.r4.examples`, unpacked
//! in the directory named by `FHIR_R4_EXAMPLES_DIR`; skipped when unset), and the embedded
//! file list against `fhir-profiles/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use fhir_core::validation::{parse_strict, supported_resource_types, validate};
use serde_json::Value;

fn examples_dir() -> Option<PathBuf> {
    match std::env::var_os("FHIR_R4_EXAMPLES_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            println!(
                "skipped: set FHIR_R4_EXAMPLES_DIR to an unpacked hl7.fhir.r4.examples@4.0.1 package"
            );
            None
        }
    }
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("examples dir is readable")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn describe(value: &Value) -> Vec<String> {
    validate(value)
        .iter()
        .map(|i| {
            format!(
                "{} at {}: {}",
                i.code.code(),
                i.expression.as_deref().unwrap_or("-"),
                i.diagnostics
            )
        })
        .collect()
}

#[test]
fn official_examples_of_supported_types_are_valid() {
    let Some(dir) = examples_dir() else { return };
    let supported = supported_resource_types();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for path in json_files(&dir) {
        let text = fs::read_to_string(&path).expect("example is readable");
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let Some(resource_type) = value["resourceType"].as_str() else {
            continue;
        };
        if !supported.contains(&resource_type) {
            continue;
        }
        *counts.entry(resource_type.to_string()).or_default() += 1;
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let issues = describe(&value);
        if !issues.is_empty() {
            failures.push(format!("{name}: {issues:#?}"));
        }
        if let Err(issue) = parse_strict(&text, resource_type) {
            failures.push(format!("{name}: strict parse: {}", issue.diagnostics));
        }
    }
    println!("validated examples: {counts:?}");
    assert_eq!(
        counts.len(),
        supported.len(),
        "an example of every supported type"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn supported_resources_inside_example_bundles_are_valid() {
    let Some(dir) = examples_dir() else { return };
    let supported = supported_resource_types();
    let mut checked = 0;
    let mut failures = Vec::new();
    for path in json_files(&dir) {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !name.starts_with("Bundle-") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("example is readable");
        let Ok(bundle) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        for (index, entry) in bundle["entry"].as_array().into_iter().flatten().enumerate() {
            let resource = &entry["resource"];
            let Some(resource_type) = resource["resourceType"]
                .as_str()
                .filter(|t| supported.contains(t))
            else {
                continue;
            };
            checked += 1;
            let issues = describe(resource);
            if !issues.is_empty() {
                failures.push(format!("{name} entry[{index}]: {issues:#?}"));
            }
            if let Err(issue) = parse_strict(&resource.to_string(), resource_type) {
                failures.push(format!(
                    "{name} entry[{index}]: strict parse: {}",
                    issue.diagnostics
                ));
            }
        }
    }
    println!("validated bundle entries: {checked}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn embedded_list_matches_fhir_profiles() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listing =
        fs::read_to_string(crate_dir.join("src/validation/embedded.rs")).expect("embedded.rs");
    let mut embedded: Vec<String> = listing
        .lines()
        .filter_map(|line| line.trim().strip_prefix("profile!(\""))
        .filter_map(|rest| rest.strip_suffix("\"),"))
        .map(str::to_string)
        .collect();
    embedded.sort();
    let profiles = crate_dir.join("../../fhir-profiles");
    let mut on_disk = Vec::new();
    for dir in [
        "StructureDefinition",
        "ValueSet",
        "CodeSystem",
        "custom/StructureDefinition",
        "custom/ValueSet",
    ] {
        for path in json_files(&profiles.join(dir)) {
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            on_disk.push(format!("{dir}/{file}"));
        }
    }
    on_disk.sort();
    assert_eq!(embedded, on_disk, "rerun scripts/update-profiles");
}

/// JSON pointers of every object and every string in `value`.
fn nodes(value: &Value, pointer: String, objects: &mut Vec<String>, strings: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            objects.push(pointer.clone());
            for (key, child) in map {
                let key = key.replace('~', "~0").replace('/', "~1");
                nodes(child, format!("{pointer}/{key}"), objects, strings);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                nodes(child, format!("{pointer}/{index}"), objects, strings);
            }
        }
        Value::String(_) => strings.push(pointer),
        _ => {}
    }
}

/// The walker reaches every node: an unknown property added to any object of an example, or
/// any of its strings emptied, is reported.
#[test]
fn every_node_of_the_examples_is_checked() {
    let Some(dir) = examples_dir() else { return };
    let supported = supported_resource_types();
    let mut mutations = 0;
    let mut missed = Vec::new();
    for path in json_files(&dir) {
        let text = fs::read_to_string(&path).expect("example is readable");
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if !value["resourceType"]
            .as_str()
            .is_some_and(|t| supported.contains(&t))
        {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let (mut objects, mut strings) = (Vec::new(), Vec::new());
        nodes(&value, String::new(), &mut objects, &mut strings);
        for pointer in objects {
            let mut mutated = value.clone();
            if let Some(Value::Object(map)) = mutated.pointer_mut(&pointer) {
                map.insert("zzUnknown".into(), Value::Bool(true));
            }
            mutations += 1;
            if !validate(&mutated)
                .iter()
                .any(|i| i.diagnostics == "unknown element")
            {
                missed.push(format!("{name}: unknown property at {pointer:?}"));
            }
        }
        for pointer in strings {
            let mut mutated = value.clone();
            if let Some(leaf) = mutated.pointer_mut(&pointer) {
                *leaf = Value::String(String::new());
            }
            mutations += 1;
            if validate(&mutated).is_empty() {
                missed.push(format!("{name}: empty string at {pointer:?}"));
            }
        }
    }
    println!("mutations checked: {mutations}");
    assert!(
        missed.is_empty(),
        "{} missed:\n{}",
        missed.len(),
        missed.join("\n")
    );
}
