//! The `search_params` table: one row per parameter of each resource type, whose id the
//! index rows carry, and the fingerprints that tell when the definitions changed.

use std::collections::HashMap;

use fhir_core::ResourceType;
use fhir_core::search::{Registry, SearchParameter};
use sqlx::{PgPool, Row};

use crate::StoreError;

/// Bumped when the rows a definition gives change without the definition changing (the
/// extraction or the tables): every type is then re-indexed at the next start. 2: the
/// reference record (`resource_references`) is filled by the re-index too. 3: the parts of
/// a name, address or contact point are rows of the whole's parameter only, with their part.
/// 4: an identifier's type codings are columns of its token rows. 5: strings and tokens are
/// lexemes of `search_terms`.
const INDEX_FORMAT: u32 = 5;

/// The ids of the indexed parameters, by resource type and code.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParamIds {
    ids: HashMap<(ResourceType, &'static str), i32>,
}

impl ParamIds {
    /// The id of parameter `code` of `rtype`, when it is indexed.
    pub(crate) fn get(&self, rtype: ResourceType, code: &str) -> Option<i32> {
        self.ids.get(&(rtype, code)).copied()
    }
}

/// A parameter as the table lists it.
struct Listed {
    rtype: ResourceType,
    param: &'static SearchParameter,
    /// What decides its index values; the table keeps its md5.
    definition: String,
}

/// Parameters the query side answers from the `resources` row itself (`id`,
/// `last_updated`): they get no index rows.
pub(crate) const FROM_RESOURCE_ROW: [&str; 2] = ["_id", "_lastUpdated"];

/// The parameters `registry` indexes for each served type: those with an expression, but
/// [`FROM_RESOURCE_ROW`].
fn listed(registry: &'static Registry) -> Vec<Listed> {
    ResourceType::ALL
        .into_iter()
        .flat_map(|rtype| {
            registry
                .for_type(rtype.as_str())
                .filter(|param| {
                    param.expression().is_some() && !FROM_RESOURCE_ROW.contains(&param.code())
                })
                .map(move |param| Listed {
                    rtype,
                    param,
                    definition: definition(registry, param),
                })
        })
        .collect()
}

/// Everything a parameter's index values depend on, as text: url, type, expression (the
/// branch for its base), phonetic matching, the implied code system, and each component
/// with the definition it takes its type from.
fn definition(registry: &Registry, param: &SearchParameter) -> String {
    let mut text = format!(
        "{}\n{}\n{}\n{}\n{}",
        param.url(),
        param.kind(),
        param.expression().map_or("", |e| e.as_str()),
        param.is_phonetic(),
        param.implied_system().unwrap_or(""),
    );
    for component in param.components() {
        let part = registry.by_url(component.definition());
        text.push_str(&format!(
            "\n{} {} {} {} {}",
            component.definition(),
            component.expression().as_str(),
            part.map_or("", |p| p.kind().as_str()),
            part.is_some_and(SearchParameter::is_phonetic),
            part.and_then(SearchParameter::implied_system).unwrap_or(""),
        ));
    }
    text
}

/// How often [`sync`] tries when a server starting at the same time adds rows it cannot see.
const SYNC_ATTEMPTS: usize = 3;

/// Makes `search_params` list exactly the parameters of `registry` (new ones get an id,
/// changed ones a new fingerprint, gone ones are removed) and returns their ids.
pub(crate) async fn sync(
    pool: &PgPool,
    registry: &'static Registry,
) -> Result<ParamIds, StoreError> {
    let listed = listed(registry);
    let mut ids = ParamIds::default();
    for _ in 0..SYNC_ATTEMPTS {
        ids = sync_once(pool, &listed).await?;
        if ids.ids.len() == listed.len() {
            break;
        }
    }
    if ids.ids.len() < listed.len() {
        tracing::warn!(
            missing = listed.len() - ids.ids.len(),
            "some search parameters have no id: their values are not indexed"
        );
    }
    Ok(ids)
}

/// One upsert of the listed parameters; a row another server inserted after this
/// statement's snapshot is missing from the answer.
async fn sync_once(pool: &PgPool, listed: &[Listed]) -> Result<ParamIds, StoreError> {
    let types: Vec<&str> = listed.iter().map(|l| l.rtype.as_str()).collect();
    let codes: Vec<&str> = listed.iter().map(|l| l.param.code()).collect();
    let kinds: Vec<&str> = listed.iter().map(|l| l.param.kind().as_str()).collect();
    let urls: Vec<&str> = listed.iter().map(|l| l.param.url()).collect();
    let definitions: Vec<&str> = listed.iter().map(|l| l.definition.as_str()).collect();
    let rows = sqlx::query(
        "with input as (
             select * from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                 as i(res_type, code, type, url, definition)
         ), gone as (
             delete from search_params p
             where not exists (select 1 from input i where i.res_type = p.res_type and i.code = p.code)
         ), known as (
             update search_params p
             set type = i.type, url = i.url, fingerprint = md5(i.definition)
             from input i
             where i.res_type = p.res_type and i.code = p.code
               and (p.type, p.url, p.fingerprint) is distinct from (i.type, i.url, md5(i.definition))
         ), added as (
             insert into search_params (res_type, code, type, url, fingerprint)
             select res_type, code, type, url, md5(definition) from input i
             where not exists (select 1 from search_params p where p.res_type = i.res_type and p.code = i.code)
             on conflict (res_type, code) do nothing
             returning id, res_type, code
         )
         select id, res_type, code from added
         union all
         select p.id, p.res_type, p.code from search_params p join input i using (res_type, code)",
    )
    .bind(&types)
    .bind(&codes)
    .bind(&kinds)
    .bind(&urls)
    .bind(&definitions)
    .fetch_all(pool)
    .await?;
    let by_name: HashMap<(String, String), i32> = rows
        .into_iter()
        .map(|row| ((row.get("res_type"), row.get("code")), row.get("id")))
        .collect();
    let mut ids = HashMap::with_capacity(listed.len());
    for l in listed {
        let name = (l.rtype.as_str().to_string(), l.param.code().to_string());
        if let Some(id) = by_name.get(&name) {
            ids.insert((l.rtype, l.param.code()), *id);
        }
    }
    Ok(ParamIds { ids })
}

/// The fingerprint of each type's definitions as `search_params` holds them, salted with
/// the index format and the server base (which decides what a local reference is).
pub(crate) async fn type_fingerprints(
    pool: &PgPool,
    server_base: Option<&str>,
) -> Result<Vec<(ResourceType, String)>, StoreError> {
    let salt = format!("{INDEX_FORMAT}\n{}", server_base.unwrap_or(""));
    let rows = sqlx::query(
        "select res_type,
                md5(string_agg(code || '=' || fingerprint, ';' order by code) || $1) as fingerprint
         from search_params group by res_type order by res_type",
    )
    .bind(salt)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let rtype: ResourceType = row.get::<String, _>("res_type").parse().ok()?;
            Some((rtype, row.get("fingerprint")))
        })
        .collect())
}
