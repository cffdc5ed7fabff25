//! A deterministic, seeded generator of realistic FHIR R4 data for the search benchmark:
//! Patients (accented names from several cultures, identifiers, birth dates, addresses,
//! telecom, some deceased), one billing Account and zero to six Invoices per Patient, and a
//! fixed set of Organizations and Practitioners they reference.
//!
//! Pure: no I/O, no clock. Every resource is a function of the seed and its index: each
//! Patient's record (the Patient, its Account and Invoices) and each Organization or
//! Practitioner draws from its own ChaCha8 stream, seeded from `(seed, kind, index)`, so the
//! same seed and index give byte-identical JSON whatever else is generated, and in any
//! order. Ranges are drawn by rejection from `next_u64` (no `rand` distribution code whose
//! values could change between versions).
//!
//! **Selectivity that does not grow with the scale.** A search that should return a handful
//! of rows must return the same handful at 1,000 and at 100,000 patients, or its latency
//! ratio compares different work. A few values are therefore *reserved* ([`reserved`]):
//! the ordinary draws never produce them, and only a few Patients below index 1,000 (so
//! present at every scale) carry them: an Icelandic family name (`Þórðardóttir`,
//! `Þórðarson`), a birth date in one three-day window of July 1961, a home in Nunavut,
//! a hospital bill above 50,000, an invoice issued on Christmas Day 2023 (ordinary invoices
//! are never dated on Christmas Day or New Year's Day). The data stay realistic: no
//! ordinary value is missing but a rare surname, three days of births, a sparsely
//! populated territory, very large bills and two holidays.

use chrono::{Datelike, Days, NaiveDate};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::{Map, Value, json};

/// The seed of the benchmark's data set unless told otherwise.
pub const DEFAULT_SEED: u64 = 20_261_128;

/// Medical record numbers (the FHIR specification's example MRN system).
pub const MRN_SYSTEM: &str = "urn:oid:1.2.36.146.595.217.0.1";
/// US social security numbers.
pub const SSN_SYSTEM: &str = "http://hl7.org/fhir/sid/us-ssn";
/// Invoice numbers.
pub const INVOICE_NUMBER_SYSTEM: &str = "urn:oid:1.2.36.146.595.217.0.2";
/// Billing account numbers.
pub const ACCOUNT_NUMBER_SYSTEM: &str = "urn:oid:1.2.36.146.595.217.0.3";
/// National provider identifiers of Organizations and Practitioners.
pub const NPI_SYSTEM: &str = "http://hl7.org/fhir/sid/us-npi";
/// The charge codes of invoice lines.
pub const CPT_SYSTEM: &str = "http://www.ama-assn.org/go/cpt";

/// Organizations generated (`o-001` ...), whatever the scale.
pub const ORGANIZATIONS: u64 = 12;
/// Practitioners generated (`pr-001` ...), whatever the scale.
pub const PRACTITIONERS: u64 = 40;

/// The most Invoices one Patient has.
pub const MAX_INVOICES: u64 = 6;

/// The values only a few Patients below index 1,000 carry (see the module documentation),
/// and the Patients that carry them. The sets are disjoint.
pub mod reserved {
    /// Patients whose family name starts with [`RARE_FAMILY_PREFIX`]: Þórðardóttir (women,
    /// even positions) and Þórðarson (men, odd positions). Each has at least two Invoices.
    pub const RARE_FAMILY: [u64; 6] = [41, 172, 356, 518, 707, 929];
    /// The prefix the rare family names share (normalised: `thordar`).
    pub const RARE_FAMILY_PREFIX: &str = "Þórðar";
    /// Among [`RARE_FAMILY`], those whose first Invoice is cancelled; the other rare-family
    /// Patients have no cancelled Invoice.
    pub const RARE_FAMILY_CANCELLED: [u64; 2] = [41, 707];

    /// Patients born in the reserved window, on these days.
    pub const BIRTH_WINDOW: [(u64, &str); 5] = [
        (88, "1961-07-10"),
        (250, "1961-07-11"),
        (611, "1961-07-12"),
        (874, "1961-07-10"),
        (963, "1961-07-12"),
    ];
    /// The reserved window of birth dates, `[start, end)`: no one else is born in it.
    pub const BIRTH_WINDOW_START: &str = "1961-07-10";
    /// See [`BIRTH_WINDOW_START`].
    pub const BIRTH_WINDOW_END: &str = "1961-07-13";

    /// The reserved state (Nunavut, Canada): only these Patients live there; `true` marks
    /// the women.
    pub const RARE_STATE_PATIENTS: [(u64, bool); 8] = [
        (19, true),
        (140, false),
        (402, true),
        (555, true),
        (688, false),
        (811, true),
        (990, false),
        (999, true),
    ];
    /// See [`RARE_STATE_PATIENTS`].
    pub const RARE_STATE: &str = "NU";

    /// Patients whose first Invoice is a hospital bill above [`BIG_BILL_THRESHOLD`]; no
    /// other Invoice comes near it (ordinary ones stay below 20,000).
    pub const BIG_BILL: [u64; 4] = [63, 290, 477, 777];
    /// See [`BIG_BILL`].
    pub const BIG_BILL_THRESHOLD: u64 = 50_000;

    /// Patients whose last Invoice is dated [`HOLIDAY`] and issued; no other Invoice is
    /// dated on Christmas Day or New Year's Day.
    pub const HOLIDAY_PATIENTS: [u64; 4] = [120, 333, 480, 951];
    /// See [`HOLIDAY_PATIENTS`].
    pub const HOLIDAY: &str = "2023-12-25";

    /// A Patient whose medical record number the benchmark searches.
    pub const IDENTIFIER_PATIENT: u64 = 417;
    /// A Patient whose Account's Invoices the benchmark searches (it has at least two).
    pub const ACCOUNT_PATIENT: u64 = 356;

    /// Every reserved Patient.
    pub fn all() -> Vec<u64> {
        let mut all: Vec<u64> = RARE_FAMILY.to_vec();
        all.extend(BIRTH_WINDOW.iter().map(|(i, _)| *i));
        all.extend(RARE_STATE_PATIENTS.iter().map(|(i, _)| *i));
        all.extend(BIG_BILL);
        all.extend(HOLIDAY_PATIENTS);
        all.push(IDENTIFIER_PATIENT);
        all
    }
}

/// The id of Patient `i`.
pub fn patient_id(i: u64) -> String {
    format!("p-{i:06}")
}

/// The id of the Account of Patient `i`.
pub fn account_id(i: u64) -> String {
    format!("a-{i:06}")
}

/// The id of Invoice `k` (1-based) of Patient `i`.
pub fn invoice_id(i: u64, k: u64) -> String {
    format!("i-{i:06}-{k}")
}

/// The id of Organization `n` (1-based).
pub fn organization_id(n: u64) -> String {
    format!("o-{n:03}")
}

/// The id of Practitioner `n` (1-based).
pub fn practitioner_id(n: u64) -> String {
    format!("pr-{n:03}")
}

/// One Patient with its Account and Invoices.
#[derive(Debug, Clone)]
pub struct Record {
    pub index: u64,
    pub patient: Value,
    pub account: Value,
    pub invoices: Vec<Value>,
}

/// The generator of one data set.
#[derive(Debug, Clone, Copy)]
pub struct Generator {
    seed: u64,
}

const KIND_PATIENT: u8 = 1;
const KIND_ORGANIZATION: u8 = 2;
const KIND_PRACTITIONER: u8 = 3;

impl Generator {
    pub fn new(seed: u64) -> Self {
        Generator { seed }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The medical record number of Patient `i`: eight digits, distinct for every index
    /// below 10⁸ (an affine bijection modulo 10⁸).
    pub fn mrn(&self, i: u64) -> String {
        const MODULUS: u64 = 100_000_000;
        // Odd and not a multiple of 5: invertible modulo 10^8.
        const FACTOR: u64 = 7_919_993;
        let offset = self.seed % MODULUS;
        let value = ((i % MODULUS) * FACTOR + offset) % MODULUS;
        format!("{value:08}")
    }

    /// Patient `i`, its Account and its Invoices.
    pub fn record(&self, i: u64) -> Record {
        let mut rng = Rng::new(self.seed, KIND_PATIENT, i);
        let person = Person::draw(&mut rng, i);
        let patient = person.patient(self, i);
        let account = person.account(&mut rng, i);
        let invoices = person.invoices(&mut rng, i);
        Record {
            index: i,
            patient,
            account,
            invoices,
        }
    }

    /// Organization `n` (1-based, up to [`ORGANIZATIONS`]).
    pub fn organization(&self, n: u64) -> Value {
        let mut rng = Rng::new(self.seed, KIND_ORGANIZATION, n);
        let (name, city, state, postal) =
            ORGANIZATION_NAMES[((n - 1) % ORGANIZATION_NAMES.len() as u64) as usize];
        let postal = rng.pattern(postal);
        let line = format!(
            "{} {} {}",
            rng.range(100, 9000),
            rng.pick(US_STREETS),
            rng.pick(US_STREET_SUFFIXES)
        );
        json!({
            "resourceType": "Organization",
            "id": organization_id(n),
            "identifier": [{"system": NPI_SYSTEM, "value": npi(&mut rng)}],
            "active": true,
            "type": [{
                "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                    "code": "prov",
                    "display": "Healthcare Provider"
                }],
                "text": "Healthcare Provider"
            }],
            "name": name,
            "telecom": [{"system": "phone", "value": us_phone(&mut rng), "use": "work"}],
            "address": [{
                "use": "work",
                "line": [line],
                "city": city,
                "state": state,
                "postalCode": postal,
                "country": "US"
            }]
        })
    }

    /// Practitioner `n` (1-based, up to [`PRACTITIONERS`]).
    pub fn practitioner(&self, n: u64) -> Value {
        let mut rng = Rng::new(self.seed, KIND_PRACTITIONER, n);
        let culture = *rng.weighted(US_CULTURES);
        let female = rng.below(2) == 0;
        let names = culture.names();
        let given = rng
            .pick(if female { names.female } else { names.male })
            .to_string();
        let family = family_for(culture, rng.pick_common(names.family), female);
        let email = format!(
            "{}.{}.{n}@hospital.example.org",
            ascii_fold(&given),
            ascii_fold(&family)
        );
        let (state, city, postal) = {
            let (_, city, state, postal) =
                ORGANIZATION_NAMES[rng.below(ORGANIZATION_NAMES.len() as u64) as usize];
            (state, city, rng.pattern(postal))
        };
        let line = format!(
            "{} {} {}",
            rng.range(100, 9000),
            rng.pick(US_STREETS),
            rng.pick(US_STREET_SUFFIXES)
        );
        json!({
            "resourceType": "Practitioner",
            "id": practitioner_id(n),
            "identifier": [{"system": NPI_SYSTEM, "value": npi(&mut rng)}],
            "active": true,
            "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Dr."]}],
            "telecom": [{"system": "email", "value": email, "use": "work"}],
            "address": [{
                "use": "work",
                "line": [line],
                "city": city,
                "state": state,
                "postalCode": postal,
                "country": "US"
            }],
            "gender": if female { "female" } else { "male" }
        })
    }
}

/// A Patient's drawn attributes, from which the Patient, Account and Invoices are written.
struct Person {
    gender: &'static str,
    culture: Culture,
    country: &'static Country,
    family: String,
    given: Vec<String>,
    maiden: Option<String>,
    prefix: Option<&'static str>,
    birth: NaiveDate,
    deceased: Deceased,
    marital: (&'static str, &'static str),
    address: Address,
    phone: (String, &'static str),
    email: Option<String>,
    ssn: Option<String>,
    active: bool,
    practitioner: u64,
    organization: u64,
}

enum Deceased {
    No,
    Boolean,
    At(String, NaiveDate),
}

struct Address {
    line: Vec<String>,
    city: &'static str,
    state: Option<&'static str>,
    postal: String,
}

impl Person {
    fn draw(rng: &mut Rng, i: u64) -> Person {
        let rare_family = reserved::RARE_FAMILY.iter().position(|&p| p == i);
        let rare_state = reserved::RARE_STATE_PATIENTS.iter().find(|(p, _)| *p == i);
        let window_birth = reserved::BIRTH_WINDOW.iter().find(|(p, _)| *p == i);
        let is_reserved = reserved::all().contains(&i);

        // Where the Patient lives, and so their culture, language and currency.
        let country: &'static Country = if rare_state.is_some() {
            &CANADA
        } else if rng.below(1000) < 900 {
            &USA
        } else {
            rng.weighted(ABROAD)
        };
        let culture = match rare_family {
            Some(_) => Culture::Icelandic,
            None => *rng.weighted(country.cultures),
        };

        let draw_gender = rng.below(1000);
        let (female, gender) = match (rare_family, rare_state) {
            (Some(position), _) => (position % 2 == 0, ""),
            (None, Some((_, female))) => (*female, ""),
            _ => match draw_gender {
                0..505 => (true, "female"),
                505..990 => (false, "male"),
                990..995 => (rng.below(2) == 0, "other"),
                _ => (rng.below(2) == 0, "unknown"),
            },
        };
        let gender = if gender.is_empty() {
            if female { "female" } else { "male" }
        } else {
            gender
        };

        let names = culture.names();
        let given_count = match rng.below(10) {
            0..5 => 1,
            5..9 => 2,
            _ => 3,
        };
        let mut given: Vec<String> = Vec::with_capacity(given_count);
        while given.len() < given_count {
            let name = if culture == Culture::Vietnamese && given.is_empty() && given_count > 1 {
                // The middle name comes first in the given names: Thị for women, Văn for men.
                if female { "Thị" } else { "Văn" }
            } else {
                rng.pick_common(if female { names.female } else { names.male })
            };
            if !given.iter().any(|g| g == name) {
                given.push(name.to_string());
            }
        }
        let family = match rare_family {
            Some(_) => {
                if female {
                    "Þórðardóttir".to_string()
                } else {
                    "Þórðarson".to_string()
                }
            }
            None => {
                let family = family_for(culture, rng.pick_common(names.family), female);
                // Hispanic families often carry both surnames.
                if culture == Culture::Hispanic && rng.below(100) < 30 {
                    let second = rng.pick_common(names.family);
                    if *second != family {
                        format!("{family} {second}")
                    } else {
                        family
                    }
                } else {
                    family
                }
            }
        };

        let birth = match window_birth {
            Some((_, day)) => date(day),
            None => loop {
                let year = if rng.below(260) < 20 {
                    1925 + rng.below(20) as i32
                } else {
                    1945 + rng.below(80) as i32
                };
                let days_in_year = if NaiveDate::from_ymd_opt(year, 2, 29).is_some() {
                    366
                } else {
                    365
                };
                let day = ymd(year, 1, 1) + Days::new(rng.below(days_in_year));
                let in_window = (date(reserved::BIRTH_WINDOW_START)
                    ..date(reserved::BIRTH_WINDOW_END))
                    .contains(&day);
                // Reserved Patients are adults: their invoices may fall in any year.
                if !(in_window || (is_reserved && year > 2000)) {
                    break day;
                }
            },
        };
        let age_2025 = 2025 - birth.year();

        let married_draw = rng.below(100);
        let maiden_draw = rng.below(100);
        let maiden = if female && age_2025 >= 22 && married_draw < 55 && maiden_draw < 35 {
            Some(family_for(culture, rng.pick_common(names.family), true))
        } else {
            None
        };
        let marital = if age_2025 < 18 {
            ("S", "Never Married")
        } else {
            match married_draw {
                0..55 => ("M", "Married"),
                55..80 => ("S", "Never Married"),
                80..92 => ("D", "Divorced"),
                _ => ("W", "Widowed"),
            }
        };
        let prefix = if age_2025 < 18 {
            None
        } else if rng.below(100) < 8 {
            Some("Dr.")
        } else if !female {
            Some("Mr.")
        } else if marital.0 == "M" {
            Some("Mrs.")
        } else {
            Some("Ms.")
        };

        let deceased_draw = rng.below(1000);
        let deceased_limit = if birth.year() < 1950 { 200 } else { 30 };
        let deceased = if is_reserved || deceased_draw >= deceased_limit {
            Deceased::No
        } else if deceased_draw % 5 == 0 {
            Deceased::Boolean
        } else {
            let first = birth + Days::new(1);
            let last = ymd(2025, 10, 31).max(first);
            let span = (last - first).num_days() as u64 + 1;
            let day = first + Days::new(rng.below(span));
            let when = format!(
                "{}T{:02}:{:02}:{:02}{}",
                day.format("%Y-%m-%d"),
                rng.below(24),
                rng.below(60),
                rng.below(60),
                country.offset
            );
            Deceased::At(when, day)
        };

        let address = if rare_state.is_some() {
            let region = &NUNAVUT;
            let (city, postal) = rng.pick(region.cities);
            Address {
                line: vec![format!("{} {}", 100 + rng.below(900), rng.pick(CA_STREETS))],
                city,
                state: Some(region.state),
                postal: rng.pattern(postal),
            }
        } else {
            country.address(rng)
        };
        let phone = (
            country.phone(rng),
            if rng.below(100) < 60 {
                "mobile"
            } else {
                "home"
            },
        );
        let email = if rng.below(100) < 70 {
            Some(format!(
                "{}.{}.{i}@{}",
                ascii_fold(&given[0]),
                ascii_fold(family.split(' ').next().unwrap_or("patient")),
                rng.pick(EMAIL_DOMAINS)
            ))
        } else {
            None
        };
        let ssn = if country.code == "US" && rng.below(100) < 65 {
            Some(format!(
                "999-{:02}-{:04}",
                10 + rng.below(90),
                rng.below(10_000)
            ))
        } else {
            None
        };
        let active = rng.below(100) < 97;
        let practitioner = 1 + rng.below(PRACTITIONERS);
        let organization = 1 + rng.below(ORGANIZATIONS);
        Person {
            gender,
            culture,
            country,
            family,
            given,
            maiden,
            prefix,
            birth,
            deceased,
            marital,
            address,
            phone,
            email,
            ssn,
            active,
            practitioner,
            organization,
        }
    }

    fn display_name(&self) -> String {
        format!("{} {}", self.given.join(" "), self.family)
    }

    fn patient(&self, generator: &Generator, i: u64) -> Value {
        let mut patient = Map::new();
        patient.insert("resourceType".into(), "Patient".into());
        patient.insert("id".into(), patient_id(i).into());
        let mut identifiers = vec![json!({
            "use": "usual",
            "type": {
                "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                    "code": "MR",
                    "display": "Medical Record Number"
                }],
                "text": "Medical Record Number"
            },
            "system": MRN_SYSTEM,
            "value": generator.mrn(i)
        })];
        if let Some(ssn) = &self.ssn {
            identifiers.push(json!({
                "use": "official",
                "type": {
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                        "code": "SS",
                        "display": "Social Security Number"
                    }],
                    "text": "Social Security Number"
                },
                "system": SSN_SYSTEM,
                "value": ssn
            }));
        }
        patient.insert("identifier".into(), identifiers.into());
        patient.insert("active".into(), self.active.into());

        let mut official = Map::new();
        official.insert("use".into(), "official".into());
        official.insert("family".into(), self.family.clone().into());
        official.insert("given".into(), self.given.clone().into());
        if let Some(prefix) = self.prefix {
            official.insert("prefix".into(), json!([prefix]));
        }
        let mut names = vec![Value::Object(official)];
        if let Some(maiden) = &self.maiden {
            names.push(json!({"use": "maiden", "family": maiden, "given": self.given}));
        }
        patient.insert("name".into(), names.into());

        let mut telecom =
            vec![json!({"system": "phone", "value": self.phone.0, "use": self.phone.1})];
        if let Some(email) = &self.email {
            telecom.push(json!({"system": "email", "value": email, "use": "home"}));
        }
        patient.insert("telecom".into(), telecom.into());
        patient.insert("gender".into(), self.gender.into());
        patient.insert(
            "birthDate".into(),
            self.birth.format("%Y-%m-%d").to_string().into(),
        );
        match &self.deceased {
            Deceased::No => {}
            Deceased::Boolean => {
                patient.insert("deceasedBoolean".into(), true.into());
            }
            Deceased::At(when, _) => {
                patient.insert("deceasedDateTime".into(), when.clone().into());
            }
        }
        let mut address = Map::new();
        address.insert("use".into(), "home".into());
        address.insert("type".into(), "physical".into());
        address.insert("line".into(), self.address.line.clone().into());
        address.insert("city".into(), self.address.city.into());
        if let Some(state) = self.address.state {
            address.insert("state".into(), state.into());
        }
        address.insert("postalCode".into(), self.address.postal.clone().into());
        address.insert("country".into(), self.country.code.into());
        patient.insert("address".into(), json!([address]));
        patient.insert(
            "maritalStatus".into(),
            json!({
                "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                    "code": self.marital.0,
                    "display": self.marital.1
                }],
                "text": self.marital.1
            }),
        );
        let (language, language_display) = self.culture.language(self.country);
        patient.insert(
            "communication".into(),
            json!([{
                "language": {
                    "coding": [{"system": "urn:ietf:bcp:47", "code": language, "display": language_display}],
                    "text": language_display
                },
                "preferred": true
            }]),
        );
        patient.insert(
            "generalPractitioner".into(),
            json!([{"reference": format!("Practitioner/{}", practitioner_id(self.practitioner))}]),
        );
        patient.insert(
            "managingOrganization".into(),
            json!({"reference": format!("Organization/{}", organization_id(self.organization))}),
        );
        Value::Object(patient)
    }

    fn account(&self, rng: &mut Rng, i: u64) -> Value {
        let inactive = !matches!(self.deceased, Deceased::No) || !self.active || rng.below(100) < 5;
        let (code, display) = if rng.below(100) < 90 {
            ("PBILLACCT", "patient billing account")
        } else {
            ("CASH", "Cash")
        };
        let opened = self.birth.max(ymd(2015, 1, 1)) + Days::new(rng.below(365));
        json!({
            "resourceType": "Account",
            "id": account_id(i),
            "identifier": [{"system": ACCOUNT_NUMBER_SYSTEM, "value": format!("ACC-{i:07}")}],
            "status": if inactive { "inactive" } else { "active" },
            "type": {
                "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": code,
                    "display": display
                }],
                "text": display
            },
            "name": self.display_name(),
            "subject": [{"reference": format!("Patient/{}", patient_id(i)), "display": self.display_name()}],
            "servicePeriod": {"start": opened.format("%Y-%m-%d").to_string()},
            "owner": {"reference": format!("Organization/{}", organization_id(self.organization))},
            "description": format!("Billing account of {}", self.display_name())
        })
    }

    fn invoices(&self, rng: &mut Rng, i: u64) -> Vec<Value> {
        let mut count = match rng.below(100) {
            0..15 => 0,
            15..40 => 1,
            40..65 => 2,
            65..80 => 3,
            80..90 => 4,
            90..96 => 5,
            _ => 6,
        };
        let needs_two = reserved::RARE_FAMILY.contains(&i)
            || reserved::BIG_BILL.contains(&i)
            || reserved::HOLIDAY_PATIENTS.contains(&i)
            || i == reserved::ACCOUNT_PATIENT;
        if needs_two {
            count = count.max(2);
        }
        // Invoices fall between 2019 and October 2026, after birth and before death.
        let first = self.birth.max(ymd(2019, 1, 1));
        let last = match &self.deceased {
            Deceased::At(_, day) => (*day).min(ymd(2026, 10, 31)),
            _ => ymd(2026, 10, 31),
        };
        if last <= first {
            return Vec::new();
        }
        let span = (last - first).num_days() as u64;
        // No invoice on Christmas Day or New Year's Day (see `reserved::HOLIDAY`): a draw
        // that lands there is drawn again, and dropped after a few tries.
        let mut dates: Vec<NaiveDate> = (0..count)
            .filter_map(|_| {
                (0..8).find_map(|_| {
                    let day = first + Days::new(rng.below(span));
                    let holiday = (day.month() == 12 && day.day() == 25)
                        || (day.month() == 1 && day.day() == 1);
                    (!holiday).then_some(day)
                })
            })
            .collect();
        dates.sort();
        let count = dates.len() as u64;
        (1..=count)
            .map(|k| {
                let day = dates[(k - 1) as usize];
                self.invoice(rng, i, k, count, day)
            })
            .collect()
    }

    fn invoice(&self, rng: &mut Rng, i: u64, k: u64, count: u64, day: NaiveDate) -> Value {
        let holiday = reserved::HOLIDAY_PATIENTS.contains(&i) && k == count;
        let big = reserved::BIG_BILL.contains(&i) && k == 1;
        let day = if holiday {
            date(reserved::HOLIDAY)
        } else {
            day
        };
        let mut status = match rng.below(100) {
            0..45 => "issued",
            45..80 => "balanced",
            80..88 => "draft",
            _ => "cancelled",
        };
        if reserved::RARE_FAMILY.contains(&i) {
            status = if reserved::RARE_FAMILY_CANCELLED.contains(&i) && k == 1 {
                "cancelled"
            } else if status == "cancelled" {
                "balanced"
            } else {
                status
            };
        }
        if holiday {
            status = "issued";
        }
        let currency = self.country.currency;
        let lines = 1 + rng.below(5);
        let mut line_items = Vec::new();
        let mut net: u64 = 0;
        for sequence in 1..=lines {
            let (code, display, low, high) = if big && sequence == 1 {
                rng.pick(MAJOR_PROCEDURES)
            } else {
                rng.pick(CHARGES)
            };
            let cents = rng.range(low as i64, high as i64) as u64;
            net += cents;
            line_items.push(json!({
                "sequence": sequence,
                "chargeItemCodeableConcept": {
                    "coding": [{"system": CPT_SYSTEM, "code": code, "display": display}],
                    "text": display
                },
                "priceComponent": [{"type": "base", "amount": money(cents, currency)}]
            }));
        }
        // Medical services carry no sales tax in the US; the European invoices add VAT.
        let tax = if currency == "USD" { 0 } else { net * 19 / 100 };
        let gross = net + tax;
        let mut total_components = vec![json!({"type": "base", "amount": money(net, currency)})];
        if tax > 0 {
            total_components.push(json!({
                "type": "tax",
                "code": {"text": "VAT 19%"},
                "factor": decimal_text("0.19"),
                "amount": money(tax, currency)
            }));
        }
        let time = if holiday {
            "11:30:00".to_string()
        } else {
            format!("{:02}:{:02}:00", 13 + rng.below(9), rng.below(60))
        };
        let mut invoice = Map::new();
        invoice.insert("resourceType".into(), "Invoice".into());
        invoice.insert("id".into(), invoice_id(i, k).into());
        invoice.insert(
            "identifier".into(),
            json!([{"system": INVOICE_NUMBER_SYSTEM, "value": format!("INV-{}-{i:06}-{k}", day.year())}]),
        );
        invoice.insert("status".into(), status.into());
        if status == "cancelled" {
            invoice.insert("cancelledReason".into(), (rng.pick(CANCEL_REASONS)).into());
        }
        invoice.insert(
            "subject".into(),
            json!({"reference": format!("Patient/{}", patient_id(i)), "display": self.display_name()}),
        );
        // UTC afternoons: every invoice falls inside its calendar day in any time zone of
        // the Americas and Europe.
        invoice.insert(
            "date".into(),
            format!("{}T{time}Z", day.format("%Y-%m-%d")).into(),
        );
        let practitioner = if rng.below(100) < 70 {
            self.practitioner
        } else {
            1 + rng.below(PRACTITIONERS)
        };
        invoice.insert(
            "participant".into(),
            json!([{
                "role": {
                    "coding": [{
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                        "code": "ATND",
                        "display": "attender"
                    }],
                    "text": "Attending physician"
                },
                "actor": {"reference": format!("Practitioner/{}", practitioner_id(practitioner))}
            }]),
        );
        invoice.insert(
            "issuer".into(),
            json!({"reference": format!("Organization/{}", organization_id(self.organization))}),
        );
        invoice.insert(
            "account".into(),
            json!({"reference": format!("Account/{}", account_id(i))}),
        );
        invoice.insert("lineItem".into(), line_items.into());
        invoice.insert("totalPriceComponent".into(), total_components.into());
        invoice.insert("totalNet".into(), money(net, currency));
        invoice.insert("totalGross".into(), money(gross, currency));
        invoice.insert("paymentTerms".into(), (rng.pick(PAYMENT_TERMS)).into());
        Value::Object(invoice)
    }
}

/// A FHIR Money with `cents` written with two decimals.
fn money(cents: u64, currency: &str) -> Value {
    json!({"value": decimal_text(&format!("{}.{:02}", cents / 100, cents % 100)), "currency": currency})
}

/// A JSON number exactly as written (the workspace's serde_json keeps the digits).
fn decimal_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).unwrap_or(NaiveDate::MIN)
}

fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or(NaiveDate::MIN)
}

/// A ten-digit NPI-like number (starting with 1, as real ones do).
fn npi(rng: &mut Rng) -> String {
    format!("1{:09}", rng.below(1_000_000_000))
}

fn us_phone(rng: &mut Rng) -> String {
    format!("555-{:03}-{:04}", 200 + rng.below(800), rng.below(10_000))
}

/// `text` in lower-case ASCII letters and digits, accents removed (for email addresses).
pub fn ascii_fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        let folded: &str = match c {
            'a'..='z' | '0'..='9' => {
                out.push(c);
                continue;
            }
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'ą' | 'ă' | 'ạ' | 'ả' | 'ấ' | 'ầ' | 'ậ' => {
                "a"
            }
            'æ' => "ae",
            'ç' | 'ć' | 'č' => "c",
            'ď' | 'đ' | 'ð' => "d",
            'é' | 'è' | 'ê' | 'ë' | 'ę' | 'ě' | 'ễ' | 'ế' | 'ệ' => "e",
            'ğ' => "g",
            'í' | 'ì' | 'î' | 'ï' | 'ı' | 'ị' => "i",
            'ł' => "l",
            'ñ' | 'ń' | 'ň' => "n",
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' | 'ơ' | 'ọ' | 'ố' | 'ồ' | 'ộ' | 'ờ' => {
                "o"
            }
            'œ' => "oe",
            'ř' => "r",
            'ś' | 'š' | 'ş' => "s",
            'ß' => "ss",
            'ť' => "t",
            'þ' => "th",
            'ú' | 'ù' | 'û' | 'ü' | 'ů' | 'ư' | 'ũ' | 'ụ' => "u",
            'ý' | 'ÿ' | 'ỳ' => "y",
            'ź' | 'ż' | 'ž' => "z",
            _ => "",
        };
        out.push_str(folded);
    }
    out
}

/// A family name as a person of that gender carries it (Polish -ski/-ska, Czech -ová).
fn family_for(culture: Culture, family: &str, female: bool) -> String {
    if !female {
        return family.to_string();
    }
    match culture {
        Culture::Polish => {
            if let Some(stem) = family.strip_suffix("ski") {
                format!("{stem}ska")
            } else if let Some(stem) = family.strip_suffix("cki") {
                format!("{stem}cka")
            } else {
                family.to_string()
            }
        }
        Culture::Czech => {
            if let Some(stem) = family.strip_suffix('ý') {
                format!("{stem}á")
            } else if let Some(stem) = family.strip_suffix('a') {
                format!("{stem}ová")
            } else {
                format!("{family}ová")
            }
        }
        _ => family.to_string(),
    }
}

// --- random draws ----------------------------------------------------------------------

struct Rng(ChaCha8Rng);

impl Rng {
    fn new(seed: u64, kind: u8, index: u64) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&index.to_le_bytes());
        key[16] = kind;
        Rng(ChaCha8Rng::from_seed(key))
    }

    /// Uniform in `0..n` (`n` > 0), by rejection.
    fn below(&mut self, n: u64) -> u64 {
        let n = n.max(1);
        let rejected = (u64::MAX % n + 1) % n;
        loop {
            let value = self.0.next_u64();
            if value <= u64::MAX - rejected {
                return value % n;
            }
        }
    }

    /// Uniform in `low..high`.
    fn range(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low).max(1) as u64) as i64
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// One of `items`, the first ones more often (the lesser of two uniform draws: the
    /// first is picked about twice as often as the middle one): names are not uniform.
    fn pick_common<T: Copy>(&mut self, items: &[T]) -> T {
        let n = items.len() as u64;
        items[self.below(n).min(self.below(n)) as usize]
    }

    fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u64 = items.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut draw = self.below(total);
        for (item, weight) in items {
            if draw < u64::from(*weight) {
                return item;
            }
            draw -= u64::from(*weight);
        }
        &items[items.len() - 1].0
    }

    /// `pattern` with each `#` replaced by a digit and each `@` by a letter.
    fn pattern(&mut self, pattern: &str) -> String {
        const LETTERS: &[u8] = b"ABCEGHJKLMNPRSTVXY";
        pattern
            .chars()
            .map(|c| match c {
                '#' => char::from(b'0' + self.below(10) as u8),
                '@' => char::from(LETTERS[self.below(LETTERS.len() as u64) as usize]),
                c => c,
            })
            .collect()
    }
}

// --- cultures and names ----------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Culture {
    English,
    Hispanic,
    French,
    German,
    Polish,
    Scandinavian,
    Irish,
    Vietnamese,
    Turkish,
    Czech,
    Icelandic,
}

struct Names {
    family: &'static [&'static str],
    female: &'static [&'static str],
    male: &'static [&'static str],
}

impl Culture {
    fn names(self) -> &'static Names {
        match self {
            Culture::English => &ENGLISH,
            Culture::Hispanic => &HISPANIC,
            Culture::French => &FRENCH,
            Culture::German => &GERMAN,
            Culture::Polish => &POLISH,
            Culture::Scandinavian => &SCANDINAVIAN,
            Culture::Irish => &IRISH,
            Culture::Vietnamese => &VIETNAMESE,
            Culture::Turkish => &TURKISH,
            Culture::Czech => &CZECH,
            Culture::Icelandic => &ICELANDIC,
        }
    }

    /// The preferred language: the country's, or the culture's for immigrants to the US
    /// and Canada (who mostly prefer English).
    fn language(self, country: &Country) -> (&'static str, &'static str) {
        if country.code != "US" && country.code != "CA" {
            return (country.language.0, country.language.1);
        }
        match self {
            Culture::Hispanic => ("es", "Spanish"),
            Culture::French if country.code == "CA" => ("fr-CA", "French (Canada)"),
            Culture::Vietnamese => ("vi", "Vietnamese"),
            _ => (country.language.0, country.language.1),
        }
    }
}

static ENGLISH: Names = Names {
    family: &[
        "Smith",
        "Johnson",
        "Williams",
        "Brown",
        "Jones",
        "Miller",
        "Davis",
        "Wilson",
        "Anderson",
        "Taylor",
        "Moore",
        "Jackson",
        "Martin",
        "Lee",
        "Thompson",
        "White",
        "Harris",
        "Clark",
        "Lewis",
        "Robinson",
        "Walker",
        "Young",
        "Allen",
        "King",
        "Wright",
        "Scott",
        "Hill",
        "Green",
        "Adams",
        "Nelson",
        "Baker",
        "Hall",
        "Campbell",
        "Mitchell",
        "Carter",
        "Roberts",
        "Phillips",
        "Evans",
        "Turner",
        "Parker",
        "Collins",
        "Edwards",
        "Stewart",
        "Morris",
        "Murray",
        "Cook",
        "Rogers",
        "Morgan",
        "Peterson",
        "Cooper",
        "Reed",
        "Bailey",
        "Bell",
        "Kelly",
        "Howard",
        "Ward",
        "Cox",
        "Richardson",
        "Wood",
        "Watson",
        "Brooks",
        "Bennett",
        "Gray",
        "James",
        "Hughes",
        "Price",
        "Myers",
        "Long",
        "Foster",
        "Sanders",
        "Ross",
        "Powell",
        "Sullivan",
        "Russell",
        "Ortiz",
        "Jenkins",
        "Perry",
        "Butler",
        "Barnes",
        "Fisher",
        "Henderson",
        "Coleman",
        "Simmons",
        "Patterson",
        "Jordan",
        "Reynolds",
        "Hamilton",
        "Graham",
        "Kim",
        "Wallace",
        "Woods",
        "Cole",
        "West",
        "Owens",
        "Medhurst",
        "VonRueden",
        "Abernathy",
        "Cummerata",
        "Schowalter",
        "Kshlerin",
        "Wunsch",
        "Bergstrom",
        "Hyatt",
        "Marquardt",
    ],
    female: &[
        "Mary",
        "Patricia",
        "Jennifer",
        "Linda",
        "Elizabeth",
        "Barbara",
        "Susan",
        "Jessica",
        "Sarah",
        "Karen",
        "Lisa",
        "Nancy",
        "Betty",
        "Sandra",
        "Margaret",
        "Ashley",
        "Kimberly",
        "Emily",
        "Donna",
        "Michelle",
        "Carol",
        "Amanda",
        "Melissa",
        "Deborah",
        "Stephanie",
        "Rebecca",
        "Sharon",
        "Laura",
        "Cynthia",
        "Amy",
        "Kathleen",
        "Angela",
        "Shirley",
        "Brenda",
        "Emma",
        "Anna",
        "Pamela",
        "Nicole",
        "Samantha",
        "Katherine",
        "Christine",
        "Helen",
        "Debra",
        "Rachel",
        "Carolyn",
        "Janet",
        "Maria",
        "Olivia",
        "Heather",
        "Diane",
        "Julie",
        "Joyce",
        "Victoria",
        "Ruth",
        "Virginia",
        "Lauren",
        "Kelly",
        "Christina",
        "Joan",
        "Evelyn",
        "Judith",
        "Andrea",
        "Hannah",
        "Megan",
        "Cheryl",
        "Jacqueline",
        "Martha",
        "Madison",
        "Teresa",
        "Gloria",
        "Sara",
        "Janice",
        "Ann",
        "Kathryn",
        "Abigail",
        "Sophia",
        "Frances",
        "Jean",
        "Alice",
        "Judy",
        "Isabella",
        "Julia",
        "Grace",
        "Amber",
        "Denise",
        "Danielle",
        "Marilyn",
        "Beverly",
        "Charlotte",
        "Natalie",
        "Theresa",
        "Diana",
        "Brittany",
        "Doris",
        "Kayla",
        "Alexis",
        "Lori",
        "Zoë",
        "Chloé",
        "Renée",
        "Noémie",
        "Sumiko",
        "Larue",
    ],
    male: &[
        "James",
        "Robert",
        "John",
        "Michael",
        "David",
        "William",
        "Richard",
        "Joseph",
        "Thomas",
        "Christopher",
        "Charles",
        "Daniel",
        "Matthew",
        "Anthony",
        "Mark",
        "Donald",
        "Steven",
        "Andrew",
        "Paul",
        "Joshua",
        "Kenneth",
        "Kevin",
        "Brian",
        "George",
        "Timothy",
        "Ronald",
        "Jason",
        "Edward",
        "Jeffrey",
        "Ryan",
        "Jacob",
        "Gary",
        "Nicholas",
        "Eric",
        "Jonathan",
        "Stephen",
        "Larry",
        "Justin",
        "Scott",
        "Brandon",
        "Benjamin",
        "Samuel",
        "Gregory",
        "Alexander",
        "Patrick",
        "Frank",
        "Raymond",
        "Jack",
        "Dennis",
        "Jerry",
        "Tyler",
        "Aaron",
        "Henry",
        "Adam",
        "Douglas",
        "Nathan",
        "Peter",
        "Zachary",
        "Kyle",
        "Walter",
        "Harold",
        "Jeremy",
        "Ethan",
        "Carl",
        "Keith",
        "Roger",
        "Gerald",
        "Christian",
        "Terry",
        "Sean",
        "Arthur",
        "Austin",
        "Noah",
        "Lawrence",
        "Jesse",
        "Joe",
        "Bryan",
        "Billy",
        "Jordan",
        "Albert",
        "Dylan",
        "Bruce",
        "Willie",
        "Gabriel",
        "Alan",
        "Juan",
        "Logan",
        "Wayne",
        "Ralph",
        "Roy",
        "Eugene",
        "Randy",
        "Vincent",
        "Russell",
        "Louis",
        "Philip",
        "Bobby",
        "Johnny",
        "Bradley",
        "Irvin",
        "Renée",
    ],
};

static HISPANIC: Names = Names {
    family: &[
        "García",
        "Rodríguez",
        "Martínez",
        "Hernández",
        "López",
        "González",
        "Pérez",
        "Sánchez",
        "Ramírez",
        "Torres",
        "Flores",
        "Rivera",
        "Gómez",
        "Díaz",
        "Reyes",
        "Cruz",
        "Morales",
        "Ortiz",
        "Gutiérrez",
        "Chávez",
        "Ramos",
        "Ruiz",
        "Jiménez",
        "Álvarez",
        "Mendoza",
        "Vásquez",
        "Castillo",
        "Romero",
        "Herrera",
        "Medina",
        "Aguilar",
        "Moreno",
        "Muñoz",
        "Vargas",
        "Castro",
        "Guzmán",
        "Fernández",
        "Salazar",
        "Peña",
        "Ibáñez",
        "Núñez",
        "Domínguez",
        "Márquez",
        "Delgado",
        "Ríos",
        "Soto",
        "Cortés",
        "Valdés",
        "Fuentes",
    ],
    female: &[
        "María",
        "Guadalupe",
        "Lucía",
        "Sofía",
        "Valentina",
        "Mónica",
        "Inés",
        "Ana",
        "Begoña",
        "Verónica",
        "Ximena",
        "Camila",
        "Isabel",
        "Gabriela",
        "Alejandra",
        "Daniela",
        "Rosa",
        "Carmen",
        "Marisol",
        "Adriana",
        "Leticia",
        "Raquel",
        "Pilar",
        "Ángela",
        "Beatriz",
        "Luz",
        "Andrea",
        "Natalia",
        "Paula",
        "Elena",
        "Josefina",
        "Dolores",
        "Araceli",
    ],
    male: &[
        "José",
        "Juan",
        "Luis",
        "Carlos",
        "Jesús",
        "Andrés",
        "Sebastián",
        "Martín",
        "Ángel",
        "Raúl",
        "Miguel",
        "Alejandro",
        "Jorge",
        "Francisco",
        "Antonio",
        "Manuel",
        "Pedro",
        "Ricardo",
        "Fernando",
        "Javier",
        "Óscar",
        "Sergio",
        "Eduardo",
        "Rubén",
        "Joaquín",
        "Ramón",
        "Héctor",
        "Íñigo",
        "Agustín",
        "Tomás",
        "Nicolás",
        "Matías",
        "Julián",
    ],
};

static FRENCH: Names = Names {
    family: &[
        "Martin",
        "Bernard",
        "Dubois",
        "Thomas",
        "Robert",
        "Richard",
        "Petit",
        "Durand",
        "Lefèvre",
        "Leroy",
        "Moreau",
        "Simon",
        "Laurent",
        "Lefebvre",
        "Michel",
        "Garnier",
        "Girard",
        "Bonnet",
        "François",
        "Mercier",
        "Lemaître",
        "Bérenger",
        "Fontaine",
        "Rousseau",
        "Vincent",
        "Muller",
        "Lefèbvre",
        "Fournier",
        "Chevalier",
        "Gauthier",
        "Perrin",
        "Clément",
        "Barbier",
        "Brun",
        "Dumont",
        "Boucher",
        "Côté",
        "Gagnon",
        "Tremblay",
        "Bélanger",
        "Lévesque",
        "Bouchard",
        "Pelletier",
        "Gendron",
        "Séguin",
        "Thériault",
    ],
    female: &[
        "Amélie",
        "Hélène",
        "Chloé",
        "Céline",
        "Élodie",
        "Geneviève",
        "Margaux",
        "Zoé",
        "Anaïs",
        "Maëlle",
        "Sophie",
        "Camille",
        "Léa",
        "Manon",
        "Inès",
        "Juliette",
        "Louise",
        "Clémence",
        "Marie-Hélène",
        "Marie-Ève",
        "Brigitte",
        "Françoise",
        "Noémie",
        "Mélanie",
        "Aurélie",
        "Émilie",
        "Béatrice",
        "Josée",
        "Solène",
        "Thérèse",
    ],
    male: &[
        "François",
        "Jérôme",
        "Stéphane",
        "Benoît",
        "Hervé",
        "Frédéric",
        "Gaël",
        "Noël",
        "Loïc",
        "Théo",
        "Jean-Luc",
        "Jean-François",
        "Pierre",
        "Étienne",
        "Rémi",
        "André",
        "Julien",
        "Mathéo",
        "Léo",
        "Hugo",
        "Raphaël",
        "Grégoire",
        "Sébastien",
        "Cédric",
        "Timothée",
        "Aurélien",
        "Jacques",
        "Gérard",
        "Réjean",
        "Mathieu",
    ],
};

static GERMAN: Names = Names {
    family: &[
        "Müller",
        "Schmidt",
        "Schneider",
        "Fischer",
        "Weber",
        "Meyer",
        "Wagner",
        "Becker",
        "Schulz",
        "Hoffmann",
        "Schäfer",
        "Koch",
        "Bauer",
        "Richter",
        "Klein",
        "Wolf",
        "Schröder",
        "Neumann",
        "Schwarz",
        "Zimmermann",
        "Braun",
        "Krüger",
        "Hofmann",
        "Hartmann",
        "Lange",
        "Köhler",
        "Groß",
        "Weiß",
        "Jäger",
        "Löwe",
        "Böhm",
        "Kühn",
        "Günther",
        "Vogel",
        "Fuchs",
        "Lehmann",
        "Schmitz",
        "Krämer",
        "Keßler",
        "Brückner",
    ],
    female: &[
        "Käthe",
        "Ursula",
        "Greta",
        "Lena",
        "Mia",
        "Frauke",
        "Dörte",
        "Anneliese",
        "Brigitte",
        "Jördis",
        "Sünje",
        "Hannelore",
        "Gisela",
        "Renate",
        "Sabine",
        "Petra",
        "Monika",
        "Birgit",
        "Jutta",
        "Annika",
        "Lea",
        "Marlene",
        "Johanna",
        "Sophie",
        "Elisabeth",
    ],
    male: &[
        "Jürgen",
        "Günter",
        "Lukas",
        "Maximilian",
        "Jörg",
        "Björn",
        "Matthias",
        "Stefan",
        "Klaus",
        "Wolfgang",
        "Dieter",
        "Uwe",
        "Horst",
        "Helmut",
        "Rüdiger",
        "Sören",
        "Felix",
        "Jonas",
        "Leon",
        "Tobias",
        "Florian",
        "Andreas",
        "Thorsten",
        "Götz",
        "Ulrich",
    ],
};

static POLISH: Names = Names {
    family: &[
        "Nowak",
        "Kowalski",
        "Wiśniewski",
        "Wójcik",
        "Kowalczyk",
        "Kamiński",
        "Lewandowski",
        "Zieliński",
        "Szymański",
        "Woźniak",
        "Dąbrowski",
        "Kozłowski",
        "Jankowski",
        "Mazur",
        "Kwiatkowski",
        "Krawczyk",
        "Piotrowski",
        "Grabowski",
        "Nowakowski",
        "Pawłowski",
        "Michalski",
        "Wróbel",
        "Zając",
        "Król",
        "Jabłoński",
        "Majewski",
        "Olszewski",
        "Stępień",
        "Jaworski",
        "Malinowski",
        "Górski",
        "Sikora",
        "Baran",
        "Rutkowski",
        "Witkowski",
        "Walczak",
        "Sadowski",
        "Chmielewski",
        "Borkowski",
        "Czarnecki",
        "Kaczmarek",
    ],
    female: &[
        "Małgorzata",
        "Agnieszka",
        "Katarzyna",
        "Żaneta",
        "Joanna",
        "Jadwiga",
        "Bożena",
        "Łucja",
        "Anna",
        "Magdalena",
        "Ewa",
        "Krystyna",
        "Elżbieta",
        "Barbara",
        "Dorota",
        "Grażyna",
        "Halina",
        "Zofia",
        "Aleksandra",
        "Weronika",
        "Wiktoria",
        "Zuzanna",
    ],
    male: &[
        "Łukasz",
        "Paweł",
        "Michał",
        "Krzysztof",
        "Wojciech",
        "Jędrzej",
        "Maciej",
        "Grzegorz",
        "Piotr",
        "Tomasz",
        "Marcin",
        "Andrzej",
        "Jacek",
        "Stanisław",
        "Zbigniew",
        "Mirosław",
        "Kazimierz",
        "Bartłomiej",
        "Przemysław",
        "Sławomir",
        "Jakub",
        "Mikołaj",
    ],
};

static SCANDINAVIAN: Names = Names {
    family: &[
        "Hansen",
        "Johansen",
        "Nielsen",
        "Jensen",
        "Pedersen",
        "Andersen",
        "Sørensen",
        "Kristiansen",
        "Østergaard",
        "Søndergaard",
        "Bjørnstad",
        "Lindqvist",
        "Åberg",
        "Öberg",
        "Larsen",
        "Rasmussen",
        "Jørgensen",
        "Madsen",
        "Christensen",
        "Olsen",
        "Berg",
        "Haugen",
        "Johansson",
        "Karlsson",
        "Nilsson",
        "Eriksson",
        "Lindström",
        "Sjöberg",
        "Nyström",
        "Bergqvist",
        "Holmgård",
        "Dahl",
        "Lund",
        "Strøm",
        "Engström",
        "Solberg",
        "Mæland",
    ],
    female: &[
        "Åsa", "Ingrid", "Sølvi", "Astrid", "Mette", "Kirsten", "Linnéa", "Märta", "Sigrid",
        "Ingeborg", "Karin", "Maja", "Freja", "Ida", "Signe", "Liv", "Birgitta", "Solveig",
        "Ragnhild", "Tove", "Bodil", "Ylva", "Siv",
    ],
    male: &[
        "Søren",
        "Bjørn",
        "Jørgen",
        "Anders",
        "Øystein",
        "Håkon",
        "Lars",
        "Mikkel",
        "Nils",
        "Erik",
        "Magnus",
        "Henrik",
        "Sven",
        "Gustav",
        "Åke",
        "Pål",
        "Torbjørn",
        "Rasmus",
        "Frederik",
        "Emil",
        "Kasper",
        "Göran",
        "Stig",
    ],
};

static IRISH: Names = Names {
    family: &[
        "Murphy",
        "Kelly",
        "O'Sullivan",
        "Walsh",
        "O'Brien",
        "Byrne",
        "Ryan",
        "O'Connor",
        "O'Neill",
        "O'Reilly",
        "Doyle",
        "McCarthy",
        "Gallagher",
        "O'Doherty",
        "Kennedy",
        "Lynch",
        "Murray",
        "Quinn",
        "Moore",
        "McLaughlin",
        "Ó Súilleabháin",
        "Mac Giolla Phádraig",
        "Ní Bhriain",
        "Brennan",
        "Fitzgerald",
        "Nolan",
    ],
    female: &[
        "Siobhán", "Aoife", "Niamh", "Sinéad", "Caoimhe", "Saoirse", "Róisín", "Aisling",
        "Clodagh", "Orla", "Méabh", "Gráinne", "Úna", "Eimear", "Bríd", "Nóirín",
    ],
    male: &[
        "Seán", "Pádraig", "Ciarán", "Eoin", "Colm", "Cian", "Darragh", "Oisín", "Tadhg",
        "Diarmuid", "Séamus", "Ruairí", "Dónal", "Lorcan", "Cathal", "Fearghal",
    ],
};

static VIETNAMESE: Names = Names {
    family: &[
        "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ",
        "Hồ", "Ngô", "Dương", "Lý",
    ],
    female: &[
        "Thảo", "Lan", "Hương", "Ngọc", "Linh", "Mai", "Trang", "Hà", "Phương", "Thủy", "Hạnh",
        "Anh", "Yến", "Hoa", "Nhung",
    ],
    male: &[
        "Minh", "Đức", "Quang", "Huy", "Tuấn", "Hùng", "Dũng", "Long", "Nam", "Phúc", "Khánh",
        "Thắng", "Bảo", "Sơn", "Việt",
    ],
};

static TURKISH: Names = Names {
    family: &[
        "Yılmaz",
        "Kaya",
        "Demir",
        "Şahin",
        "Çelik",
        "Yıldız",
        "Yıldırım",
        "Öztürk",
        "Aydın",
        "Özdemir",
        "Arslan",
        "Doğan",
        "Kılıç",
        "Aslan",
        "Çetin",
        "Kara",
        "Koç",
        "Kurt",
        "Özkan",
        "Şimşek",
    ],
    female: &[
        "Ayşe", "Fatma", "Emine", "Gülşen", "Zeynep", "Elif", "Hatice", "Merve", "Özlem", "Büşra",
        "Şeyma", "Gül", "Derya", "Yasemin", "Nur",
    ],
    male: &[
        "Mehmet", "Mustafa", "Ahmet", "Ali", "Hüseyin", "Hasan", "İbrahim", "Çağrı", "Emre",
        "Burak", "Murat", "Ömer", "Yusuf", "Oğuz", "Serkan",
    ],
};

static CZECH: Names = Names {
    family: &[
        "Novák",
        "Svoboda",
        "Novotný",
        "Dvořák",
        "Černý",
        "Procházka",
        "Kučera",
        "Veselý",
        "Horák",
        "Němec",
        "Marek",
        "Pospíšil",
        "Pokorný",
        "Hájek",
        "Král",
        "Jelínek",
        "Růžička",
        "Beneš",
        "Fiala",
        "Sedláček",
    ],
    female: &[
        "Zuzana",
        "Markéta",
        "Tereza",
        "Jana",
        "Eva",
        "Hana",
        "Lenka",
        "Kateřina",
        "Věra",
        "Lucie",
        "Alena",
        "Petra",
        "Veronika",
        "Jitka",
        "Ludmila",
    ],
    male: &[
        "Jiří",
        "Tomáš",
        "Lukáš",
        "Jan",
        "Petr",
        "Josef",
        "Pavel",
        "Martin",
        "Jaroslav",
        "Miroslav",
        "František",
        "Zdeněk",
        "Václav",
        "Michal",
        "Ondřej",
    ],
};

/// Only the reserved rare-family Patients are Icelandic: their family names are set apart.
static ICELANDIC: Names = Names {
    family: &["Þórðarson"],
    female: &["Guðrún", "Sigríður", "Katrín", "Ásdís", "Hildur", "Þóra"],
    male: &[
        "Jón",
        "Sigurður",
        "Guðmundur",
        "Ólafur",
        "Einar",
        "Þorsteinn",
    ],
};

// --- countries and places --------------------------------------------------------------

struct Country {
    code: &'static str,
    currency: &'static str,
    language: (&'static str, &'static str),
    /// The time zone offset of dateTimes written for people there.
    offset: &'static str,
    phone: &'static str,
    cultures: &'static [(Culture, u32)],
    regions: &'static [Region],
    street: Street,
}

struct Region {
    state: &'static str,
    weight: u32,
    /// City and postal code pattern (`#` a digit, `@` a letter).
    cities: &'static [(&'static str, &'static str)],
}

#[derive(Clone, Copy)]
enum Street {
    /// `1234 Maple Street`
    American,
    /// `Hauptstraße 12`
    German,
    /// `12 rue de la Paix`
    French,
    /// `ul. Długa 12`
    Polish,
    /// `Østergade 12`
    Nordic,
    /// `12 Main Street` with Irish names
    Irish,
    /// `12 Lê Lợi`
    Vietnamese,
    /// `Calle Hidalgo 123`
    Mexican,
}

impl Country {
    fn address(&'static self, rng: &mut Rng) -> Address {
        let region = {
            let total: u64 = self.regions.iter().map(|r| u64::from(r.weight)).sum();
            let mut draw = rng.below(total);
            let mut chosen = &self.regions[0];
            for region in self.regions {
                if draw < u64::from(region.weight) {
                    chosen = region;
                    break;
                }
                draw -= u64::from(region.weight);
            }
            chosen
        };
        let (city, postal) = rng.pick(region.cities);
        let number = 1 + rng.below(200);
        let mut line = vec![match self.street {
            Street::American => format!(
                "{} {} {}",
                100 + rng.below(9800),
                rng.pick(US_STREETS),
                rng.pick(US_STREET_SUFFIXES)
            ),
            Street::German => format!("{} {number}", rng.pick(DE_STREETS)),
            Street::French => format!("{number} {}", rng.pick(FR_STREETS)),
            Street::Polish => format!("ul. {} {number}", rng.pick(PL_STREETS)),
            Street::Nordic => format!("{} {number}", rng.pick(NORDIC_STREETS)),
            Street::Irish => format!("{number} {}", rng.pick(IE_STREETS)),
            Street::Vietnamese => format!("{number} {}", rng.pick(VN_STREETS)),
            Street::Mexican => format!("{} {}", rng.pick(MX_STREETS), 10 + rng.below(990)),
        }];
        if matches!(self.street, Street::American) && rng.below(100) < 15 {
            line.push(format!(
                "Apt {}{}",
                1 + rng.below(30),
                ["A", "B", "C", "D"][rng.below(4) as usize]
            ));
        }
        Address {
            line,
            city,
            state: (!region.state.is_empty()).then_some(region.state),
            postal: rng.pattern(postal),
        }
    }

    fn phone(&self, rng: &mut Rng) -> String {
        if self.phone.is_empty() {
            us_phone(rng)
        } else {
            rng.pattern(self.phone)
        }
    }
}

const US_CULTURES: &[(Culture, u32)] = &[
    (Culture::English, 600),
    (Culture::Hispanic, 180),
    (Culture::Irish, 45),
    (Culture::German, 50),
    (Culture::Polish, 35),
    (Culture::Vietnamese, 30),
    (Culture::French, 20),
    (Culture::Scandinavian, 20),
    (Culture::Turkish, 10),
    (Culture::Czech, 10),
];

static USA: Country = Country {
    code: "US",
    currency: "USD",
    language: ("en-US", "English (United States)"),
    offset: "-05:00",
    phone: "",
    cultures: US_CULTURES,
    street: Street::American,
    regions: &[
        Region {
            state: "CA",
            weight: 390,
            cities: &[
                ("Los Angeles", "900##"),
                ("San Diego", "921##"),
                ("San Jose", "951##"),
                ("Fresno", "937##"),
                ("San Francisco", "941##"),
            ],
        },
        Region {
            state: "TX",
            weight: 300,
            cities: &[
                ("Houston", "770##"),
                ("San Antonio", "782##"),
                ("Dallas", "752##"),
                ("Austin", "787##"),
                ("El Paso", "799##"),
            ],
        },
        Region {
            state: "FL",
            weight: 220,
            cities: &[
                ("Miami", "331##"),
                ("Tampa", "336##"),
                ("Orlando", "328##"),
                ("Jacksonville", "322##"),
            ],
        },
        Region {
            state: "NY",
            weight: 197,
            cities: &[
                ("New York", "100##"),
                ("Brooklyn", "112##"),
                ("Buffalo", "142##"),
                ("Rochester", "146##"),
            ],
        },
        Region {
            state: "PA",
            weight: 130,
            cities: &[
                ("Philadelphia", "191##"),
                ("Pittsburgh", "152##"),
                ("Allentown", "181##"),
            ],
        },
        Region {
            state: "IL",
            weight: 126,
            cities: &[
                ("Chicago", "606##"),
                ("Aurora", "605##"),
                ("Springfield", "627##"),
            ],
        },
        Region {
            state: "OH",
            weight: 118,
            cities: &[
                ("Columbus", "432##"),
                ("Cleveland", "441##"),
                ("Cincinnati", "452##"),
            ],
        },
        Region {
            state: "GA",
            weight: 109,
            cities: &[
                ("Atlanta", "303##"),
                ("Savannah", "314##"),
                ("Athens", "306##"),
            ],
        },
        Region {
            state: "NC",
            weight: 107,
            cities: &[
                ("Charlotte", "282##"),
                ("Raleigh", "276##"),
                ("Durham", "277##"),
            ],
        },
        Region {
            state: "MI",
            weight: 101,
            cities: &[
                ("Detroit", "482##"),
                ("Grand Rapids", "495##"),
                ("Ann Arbor", "481##"),
            ],
        },
        Region {
            state: "NJ",
            weight: 93,
            cities: &[
                ("Newark", "071##"),
                ("Jersey City", "073##"),
                ("Trenton", "086##"),
            ],
        },
        Region {
            state: "VA",
            weight: 87,
            cities: &[
                ("Virginia Beach", "234##"),
                ("Richmond", "232##"),
                ("Arlington", "222##"),
            ],
        },
        Region {
            state: "WA",
            weight: 78,
            cities: &[
                ("Seattle", "981##"),
                ("Spokane", "992##"),
                ("Tacoma", "984##"),
            ],
        },
        Region {
            state: "AZ",
            weight: 74,
            cities: &[("Phoenix", "850##"), ("Tucson", "857##"), ("Mesa", "852##")],
        },
        Region {
            state: "MA",
            weight: 70,
            cities: &[
                ("Boston", "021##"),
                ("Worcester", "016##"),
                ("Springfield", "011##"),
            ],
        },
        Region {
            state: "TN",
            weight: 70,
            cities: &[
                ("Nashville", "372##"),
                ("Memphis", "381##"),
                ("Knoxville", "379##"),
            ],
        },
        Region {
            state: "MN",
            weight: 57,
            cities: &[
                ("Minneapolis", "554##"),
                ("Saint Paul", "551##"),
                ("Duluth", "558##"),
            ],
        },
        Region {
            state: "CO",
            weight: 58,
            cities: &[
                ("Denver", "802##"),
                ("Colorado Springs", "809##"),
                ("Boulder", "803##"),
            ],
        },
        Region {
            state: "LA",
            weight: 46,
            cities: &[
                ("New Orleans", "701##"),
                ("Baton Rouge", "708##"),
                ("Lafayette", "705##"),
            ],
        },
        Region {
            state: "KS",
            weight: 29,
            cities: &[
                ("Wichita", "672##"),
                ("Olathe", "660##"),
                ("Emporia", "668##"),
                ("Topeka", "666##"),
            ],
        },
        Region {
            state: "NM",
            weight: 21,
            cities: &[
                ("Albuquerque", "871##"),
                ("Santa Fe", "875##"),
                ("Española", "875##"),
            ],
        },
        Region {
            state: "ME",
            weight: 14,
            cities: &[("Portland", "041##"), ("Bangor", "044##")],
        },
        Region {
            state: "HI",
            weight: 14,
            cities: &[("Honolulu", "968##"), ("Hilo", "967##")],
        },
        Region {
            state: "VT",
            weight: 6,
            cities: &[("Burlington", "054##"), ("Montpelier", "056##")],
        },
        Region {
            state: "AK",
            weight: 7,
            cities: &[("Anchorage", "995##"), ("Fairbanks", "997##")],
        },
        Region {
            state: "WY",
            weight: 6,
            cities: &[("Cheyenne", "820##"), ("Casper", "826##")],
        },
    ],
};

const CANADA: Country = Country {
    code: "CA",
    currency: "USD",
    language: ("en-CA", "English (Canada)"),
    offset: "-05:00",
    phone: "+1 ###-###-####",
    cultures: &[
        (Culture::English, 60),
        (Culture::French, 25),
        (Culture::Irish, 5),
        (Culture::Vietnamese, 5),
        (Culture::Polish, 5),
    ],
    street: Street::American,
    // Nunavut is reserved (see `reserved`): not among the ordinary regions.
    regions: &[
        Region {
            state: "ON",
            weight: 390,
            cities: &[
                ("Toronto", "M5V #@#"),
                ("Ottawa", "K1P #@#"),
                ("Hamilton", "L8P #@#"),
            ],
        },
        Region {
            state: "QC",
            weight: 220,
            cities: &[
                ("Montréal", "H2X #@#"),
                ("Québec", "G1R #@#"),
                ("Trois-Rivières", "G9A #@#"),
            ],
        },
        Region {
            state: "BC",
            weight: 135,
            cities: &[("Vancouver", "V6B #@#"), ("Victoria", "V8W #@#")],
        },
        Region {
            state: "AB",
            weight: 115,
            cities: &[("Calgary", "T2P #@#"), ("Edmonton", "T5J #@#")],
        },
        Region {
            state: "MB",
            weight: 37,
            cities: &[("Winnipeg", "R3C #@#")],
        },
        Region {
            state: "SK",
            weight: 31,
            cities: &[("Saskatoon", "S7K #@#"), ("Regina", "S4P #@#")],
        },
        Region {
            state: "NS",
            weight: 26,
            cities: &[("Halifax", "B3H #@#")],
        },
        Region {
            state: "NB",
            weight: 21,
            cities: &[("Moncton", "E1C #@#"), ("Fredericton", "E3B #@#")],
        },
        Region {
            state: "NL",
            weight: 14,
            cities: &[("St. John's", "A1C #@#")],
        },
        Region {
            state: "PE",
            weight: 4,
            cities: &[("Charlottetown", "C1A #@#")],
        },
        Region {
            state: "YT",
            weight: 1,
            cities: &[("Whitehorse", "Y1A #@#")],
        },
        Region {
            state: "NT",
            weight: 1,
            cities: &[("Yellowknife", "X1A #@#")],
        },
    ],
};

static NUNAVUT: Region = Region {
    state: "NU",
    weight: 0,
    cities: &[
        ("Iqaluit", "X0A 0H0"),
        ("Rankin Inlet", "X0C 0G0"),
        ("Arviat", "X0C 0E0"),
        ("Cambridge Bay", "X0B 0C0"),
    ],
};

static ABROAD: &[(Country, u32)] = &[
    (
        Country {
            code: "MX",
            currency: "USD",
            language: ("es-MX", "Spanish (Mexico)"),
            offset: "-06:00",
            phone: "+52 ## #### ####",
            cultures: &[(Culture::Hispanic, 1)],
            street: Street::Mexican,
            regions: &[
                Region {
                    state: "Ciudad de México",
                    weight: 9,
                    cities: &[("Ciudad de México", "06###")],
                },
                Region {
                    state: "Jalisco",
                    weight: 8,
                    cities: &[("Guadalajara", "44###"), ("Zapopan", "45###")],
                },
                Region {
                    state: "Baja California",
                    weight: 4,
                    cities: &[("Tijuana", "22###"), ("Mexicali", "21###")],
                },
                Region {
                    state: "Yucatán",
                    weight: 2,
                    cities: &[("Mérida", "97###")],
                },
                Region {
                    state: "Querétaro",
                    weight: 2,
                    cities: &[("Santiago de Querétaro", "76###")],
                },
            ],
        },
        250,
    ),
    (CANADA, 200),
    (
        Country {
            code: "DE",
            currency: "EUR",
            language: ("de", "German"),
            offset: "+01:00",
            phone: "+49 ## #######",
            cultures: &[
                (Culture::German, 85),
                (Culture::Turkish, 10),
                (Culture::Polish, 5),
            ],
            street: Street::German,
            regions: &[
                Region {
                    state: "Bayern",
                    weight: 13,
                    cities: &[
                        ("München", "80###"),
                        ("Nürnberg", "90###"),
                        ("Würzburg", "97###"),
                    ],
                },
                Region {
                    state: "Berlin",
                    weight: 4,
                    cities: &[("Berlin", "10###")],
                },
                Region {
                    state: "Hamburg",
                    weight: 2,
                    cities: &[("Hamburg", "20###")],
                },
                Region {
                    state: "Baden-Württemberg",
                    weight: 11,
                    cities: &[
                        ("Stuttgart", "70###"),
                        ("Tübingen", "72###"),
                        ("Freiburg im Breisgau", "79###"),
                    ],
                },
                Region {
                    state: "Sachsen",
                    weight: 4,
                    cities: &[("Dresden", "01###"), ("Leipzig", "04###")],
                },
            ],
        },
        150,
    ),
    (
        Country {
            code: "FR",
            currency: "EUR",
            language: ("fr", "French"),
            offset: "+01:00",
            phone: "+33 # ## ## ## ##",
            cultures: &[(Culture::French, 1)],
            street: Street::French,
            regions: &[
                Region {
                    state: "Île-de-France",
                    weight: 12,
                    cities: &[
                        ("Paris", "750##"),
                        ("Saint-Denis", "932##"),
                        ("Versailles", "780##"),
                    ],
                },
                Region {
                    state: "Auvergne-Rhône-Alpes",
                    weight: 8,
                    cities: &[("Lyon", "690##"), ("Grenoble", "380##")],
                },
                Region {
                    state: "Provence-Alpes-Côte d'Azur",
                    weight: 5,
                    cities: &[("Marseille", "130##"), ("Nice", "060##")],
                },
                Region {
                    state: "Occitanie",
                    weight: 6,
                    cities: &[("Toulouse", "310##"), ("Montpellier", "340##")],
                },
            ],
        },
        100,
    ),
    (
        Country {
            code: "PL",
            currency: "EUR",
            language: ("pl", "Polish"),
            offset: "+01:00",
            phone: "+48 ### ### ###",
            cultures: &[(Culture::Polish, 1)],
            street: Street::Polish,
            regions: &[
                Region {
                    state: "mazowieckie",
                    weight: 5,
                    cities: &[("Warszawa", "0#-###"), ("Radom", "26-###")],
                },
                Region {
                    state: "małopolskie",
                    weight: 3,
                    cities: &[("Kraków", "3#-###")],
                },
                Region {
                    state: "dolnośląskie",
                    weight: 3,
                    cities: &[("Wrocław", "5#-###")],
                },
                Region {
                    state: "łódzkie",
                    weight: 2,
                    cities: &[("Łódź", "9#-###")],
                },
            ],
        },
        80,
    ),
    (
        Country {
            code: "DK",
            currency: "EUR",
            language: ("da", "Danish"),
            offset: "+01:00",
            phone: "+45 ## ## ## ##",
            cultures: &[(Culture::Scandinavian, 1)],
            street: Street::Nordic,
            regions: &[
                Region {
                    state: "Hovedstaden",
                    weight: 2,
                    cities: &[("København", "1###"), ("Frederiksberg", "2###")],
                },
                Region {
                    state: "Midtjylland",
                    weight: 1,
                    cities: &[("Aarhus", "8###")],
                },
                Region {
                    state: "Syddanmark",
                    weight: 1,
                    cities: &[("Odense", "5###")],
                },
            ],
        },
        40,
    ),
    (
        Country {
            code: "NO",
            currency: "EUR",
            language: ("nb", "Norwegian Bokmål"),
            offset: "+01:00",
            phone: "+47 ### ## ###",
            cultures: &[(Culture::Scandinavian, 1)],
            street: Street::Nordic,
            regions: &[
                Region {
                    state: "Oslo",
                    weight: 2,
                    cities: &[("Oslo", "0###")],
                },
                Region {
                    state: "Vestland",
                    weight: 1,
                    cities: &[("Bergen", "5###")],
                },
                Region {
                    state: "Trøndelag",
                    weight: 1,
                    cities: &[("Trondheim", "7###")],
                },
            ],
        },
        30,
    ),
    (
        Country {
            code: "SE",
            currency: "EUR",
            language: ("sv", "Swedish"),
            offset: "+01:00",
            phone: "+46 ## ### ## ##",
            cultures: &[(Culture::Scandinavian, 1)],
            street: Street::Nordic,
            regions: &[
                Region {
                    state: "Stockholms län",
                    weight: 2,
                    cities: &[("Stockholm", "1## ##"), ("Södertälje", "15# ##")],
                },
                Region {
                    state: "Västra Götalands län",
                    weight: 2,
                    cities: &[("Göteborg", "4## ##")],
                },
                Region {
                    state: "Skåne län",
                    weight: 1,
                    cities: &[("Malmö", "2## ##")],
                },
            ],
        },
        30,
    ),
    (
        Country {
            code: "IE",
            currency: "EUR",
            language: ("en-IE", "English (Ireland)"),
            offset: "+00:00",
            phone: "+353 ## ### ####",
            cultures: &[(Culture::Irish, 1)],
            street: Street::Irish,
            regions: &[
                Region {
                    state: "Dublin",
                    weight: 3,
                    cities: &[("Dublin", "D0# @###")],
                },
                Region {
                    state: "Cork",
                    weight: 1,
                    cities: &[("Cork", "T12 @###")],
                },
                Region {
                    state: "Galway",
                    weight: 1,
                    cities: &[("Galway", "H91 @###")],
                },
            ],
        },
        40,
    ),
    (
        Country {
            code: "CZ",
            currency: "EUR",
            language: ("cs", "Czech"),
            offset: "+01:00",
            phone: "+420 ### ### ###",
            cultures: &[(Culture::Czech, 1)],
            street: Street::Nordic,
            regions: &[
                Region {
                    state: "Praha",
                    weight: 2,
                    cities: &[("Praha", "1## ##")],
                },
                Region {
                    state: "Jihomoravský kraj",
                    weight: 1,
                    cities: &[("Brno", "6## ##")],
                },
            ],
        },
        30,
    ),
    (
        Country {
            code: "TR",
            currency: "EUR",
            language: ("tr", "Turkish"),
            offset: "+03:00",
            phone: "+90 ### ### ## ##",
            cultures: &[(Culture::Turkish, 1)],
            street: Street::Nordic,
            regions: &[
                Region {
                    state: "İstanbul",
                    weight: 3,
                    cities: &[("İstanbul", "34###")],
                },
                Region {
                    state: "İzmir",
                    weight: 1,
                    cities: &[("İzmir", "35###")],
                },
                Region {
                    state: "Ankara",
                    weight: 1,
                    cities: &[("Ankara", "06###")],
                },
            ],
        },
        25,
    ),
    (
        Country {
            code: "VN",
            currency: "USD",
            language: ("vi", "Vietnamese"),
            offset: "+07:00",
            phone: "+84 ## ### ####",
            cultures: &[(Culture::Vietnamese, 1)],
            street: Street::Vietnamese,
            regions: &[
                Region {
                    state: "Hồ Chí Minh",
                    weight: 2,
                    cities: &[("Thành phố Hồ Chí Minh", "70####")],
                },
                Region {
                    state: "Hà Nội",
                    weight: 2,
                    cities: &[("Hà Nội", "10####")],
                },
                Region {
                    state: "Đà Nẵng",
                    weight: 1,
                    cities: &[("Đà Nẵng", "55####")],
                },
            ],
        },
        25,
    ),
];

const US_STREETS: &[&str] = &[
    "Maple",
    "Oak",
    "Elm",
    "Main",
    "Cedar",
    "Pine",
    "Washington",
    "Lakeview",
    "Abernathy",
    "Hillcrest",
    "Sunset",
    "Park",
    "Lincoln",
    "Jefferson",
    "Madison",
    "Franklin",
    "Highland",
    "Willow",
    "Meadow",
    "Ridge",
    "River",
    "Spring",
    "Church",
    "Mill",
    "Forest",
    "Walnut",
    "Chestnut",
    "Sycamore",
    "Magnolia",
    "Dogwood",
    "Prairie",
    "Cherry",
    "Birch",
    "Aspen",
    "Harbor",
    "Bayview",
    "Grant",
    "Monroe",
    "Kensington",
    "Fairview",
    "Orchard",
    "Valley",
];
const US_STREET_SUFFIXES: &[&str] = &[
    "Street",
    "Avenue",
    "Road",
    "Lane",
    "Drive",
    "Court",
    "Way",
    "Boulevard",
    "Place",
    "Terrace",
    "Landing",
    "Circle",
];
const CA_STREETS: &[&str] = &[
    "Queen Elizabeth Way",
    "Federal Road",
    "Mivvik Street",
    "Niaqunngusiariaq Road",
    "Sinaa Street",
];
const DE_STREETS: &[&str] = &[
    "Hauptstraße",
    "Schulstraße",
    "Gartenstraße",
    "Bahnhofstraße",
    "Dorfstraße",
    "Bergstraße",
    "Lindenstraße",
    "Kirchweg",
    "Am Mühlbach",
    "Goethestraße",
    "Schillerplatz",
    "Weißdornweg",
];
const FR_STREETS: &[&str] = &[
    "rue de la Paix",
    "avenue des Champs-Élysées",
    "rue Émile Zola",
    "boulevard Saint-Michel",
    "rue du Général-de-Gaulle",
    "place de l'Église",
    "rue des Écoles",
    "chemin des Prés",
];
const PL_STREETS: &[&str] = &[
    "Długa",
    "Marszałkowska",
    "Piękna",
    "Żeromskiego",
    "Słoneczna",
    "Krótka",
    "Wrocławska",
];
const NORDIC_STREETS: &[&str] = &[
    "Østergade",
    "Vestergade",
    "Storgata",
    "Kungsgatan",
    "Drottninggatan",
    "Nørrebrogade",
    "Åboulevarden",
    "Sjövägen",
];
const IE_STREETS: &[&str] = &[
    "Main Street",
    "O'Connell Street",
    "Grafton Street",
    "Patrick Street",
    "Shop Street",
    "Bóthar na Trá",
];
const VN_STREETS: &[&str] = &[
    "Lê Lợi",
    "Nguyễn Huệ",
    "Trần Hưng Đạo",
    "Hai Bà Trưng",
    "Lý Thường Kiệt",
];
const MX_STREETS: &[&str] = &[
    "Calle Hidalgo",
    "Avenida Juárez",
    "Calle Morelos",
    "Avenida Reforma",
    "Calle Independencia",
    "Calzada Tlalpan",
];

const EMAIL_DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
];

const ORGANIZATION_NAMES: &[(&str, &str, &str, &str)] = &[
    (
        "Saint Mary's Regional Medical Center",
        "Boston",
        "MA",
        "021##",
    ),
    ("Hilltop Manor Nursing Center", "Emporia", "KS", "668##"),
    ("Lakeview Community Hospital", "Chicago", "IL", "606##"),
    ("Sunrise Family Clinic", "Phoenix", "AZ", "850##"),
    ("Clínica San José", "San Antonio", "TX", "782##"),
    ("Bayview Medical Group", "San Francisco", "CA", "941##"),
    ("Northside Pediatrics", "Atlanta", "GA", "303##"),
    ("Cedar Valley Health", "Minneapolis", "MN", "554##"),
    (
        "Hôpital Sainte-Thérèse Family Practice",
        "New Orleans",
        "LA",
        "701##",
    ),
    ("Riverbend Orthopedics", "Nashville", "TN", "372##"),
    ("Evergreen Cardiology Associates", "Seattle", "WA", "981##"),
    ("Harborview Urgent Care", "Miami", "FL", "331##"),
];

/// Ordinary charges: CPT code, display, price range in cents `[low, high)`. At most five
/// lines of at most 3,000 each, with VAT at most 17,850: ordinary invoices stay below
/// 20,000, far from the reserved big bills.
const CHARGES: &[(&str, &str, u64, u64)] = &[
    (
        "99213",
        "Office or other outpatient visit, established patient, 20 minutes",
        9_000,
        18_000,
    ),
    (
        "99214",
        "Office or other outpatient visit, established patient, 30 minutes",
        13_000,
        26_000,
    ),
    (
        "99203",
        "Office or other outpatient visit, new patient, 30 minutes",
        11_000,
        22_000,
    ),
    (
        "99395",
        "Periodic comprehensive preventive medicine, 18-39 years",
        15_000,
        30_000,
    ),
    ("80053", "Comprehensive metabolic panel", 1_500, 8_000),
    (
        "85025",
        "Complete blood count with automated differential",
        1_000,
        6_000,
    ),
    ("83036", "Hemoglobin A1c", 1_200, 5_000),
    (
        "36415",
        "Collection of venous blood by venipuncture",
        500,
        3_000,
    ),
    (
        "71046",
        "Radiologic examination, chest; 2 views",
        6_000,
        30_000,
    ),
    (
        "93000",
        "Electrocardiogram, routine ECG with at least 12 leads",
        3_000,
        15_000,
    ),
    ("90471", "Immunization administration", 2_000, 6_000),
    (
        "90686",
        "Influenza virus vaccine, quadrivalent, preservative free",
        2_500,
        7_000,
    ),
    (
        "99283",
        "Emergency department visit, moderate severity",
        40_000,
        250_000,
    ),
    (
        "70450",
        "Computed tomography, head or brain; without contrast",
        30_000,
        300_000,
    ),
    (
        "72148",
        "Magnetic resonance imaging, lumbar spine; without contrast",
        60_000,
        300_000,
    ),
    (
        "99223",
        "Initial hospital inpatient care, high complexity",
        25_000,
        80_000,
    ),
    (
        "97110",
        "Therapeutic exercises, each 15 minutes",
        4_000,
        12_000,
    ),
    ("90837", "Psychotherapy, 60 minutes", 12_000, 25_000),
];

/// Hospital procedures of the reserved big bills: above 50,000 on their own.
const MAJOR_PROCEDURES: &[(&str, &str, u64, u64)] = &[
    (
        "27447",
        "Arthroplasty, knee, condyle and plateau; total knee arthroplasty",
        5_000_100,
        9_000_000,
    ),
    (
        "33533",
        "Coronary artery bypass, using arterial graft; single arterial graft",
        9_000_000,
        20_000_000,
    ),
    (
        "47562",
        "Laparoscopy, surgical; cholecystectomy",
        5_000_100,
        7_500_000,
    ),
    (
        "22612",
        "Arthrodesis, posterior technique, single interspace; lumbar",
        8_000_000,
        16_000_000,
    ),
];

const CANCEL_REASONS: &[&str] = &[
    "Duplicate charge",
    "Billed to the wrong insurer",
    "Service not rendered",
    "Replaced by a corrected invoice",
];

const PAYMENT_TERMS: &[&str] = &[
    "Net 30",
    "Net 60",
    "Due on receipt",
    "Payment plan: 6 monthly installments",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The search normalisation of `fhir_core::search::normalize`, enough for these names:
    /// lower case, accents and marks removed, the same letter folds.
    fn normalize(text: &str) -> String {
        ascii_fold(text)
    }

    fn families(record: &Record) -> Vec<String> {
        record.patient["name"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["family"].as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn the_same_seed_and_index_give_the_same_bytes() {
        let a = Generator::new(7);
        let b = Generator::new(7);
        for i in [0, 1, 41, 999, 12_345, 99_999] {
            let (ra, rb) = (a.record(i), b.record(i));
            assert_eq!(
                serde_json::to_string(&ra.patient).ok(),
                serde_json::to_string(&rb.patient).ok()
            );
            assert_eq!(
                serde_json::to_string(&ra.account).ok(),
                serde_json::to_string(&rb.account).ok()
            );
            assert_eq!(
                serde_json::to_string(&ra.invoices).ok(),
                serde_json::to_string(&rb.invoices).ok()
            );
        }
        for n in 1..=ORGANIZATIONS {
            assert_eq!(a.organization(n), b.organization(n));
        }
        for n in 1..=PRACTITIONERS {
            assert_eq!(a.practitioner(n), b.practitioner(n));
        }
        // Another seed gives other data.
        assert_ne!(Generator::new(8).record(5).patient, a.record(5).patient);
    }

    /// The ChaCha8 stream is the data set: a rand_chacha that changed it would change
    /// every recorded run's data.
    #[test]
    fn the_random_stream_is_pinned() {
        let mut rng = Rng::new(DEFAULT_SEED, KIND_PATIENT, 123);
        assert_eq!(rng.0.next_u64(), 16_965_926_726_864_784_041);
    }

    #[test]
    fn mrns_are_distinct() {
        let g = Generator::new(DEFAULT_SEED);
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000 {
            assert!(seen.insert(g.mrn(i)), "duplicate MRN at {i}");
        }
    }

    /// Strings, dates and shapes that strict FHIR R4 parsing requires.
    fn check_value(path: &str, value: &Value) {
        match value {
            Value::String(s) => {
                assert!(!s.is_empty(), "empty string at {path}");
                assert_eq!(s.trim(), s, "surrounding whitespace at {path}");
            }
            Value::Array(items) => {
                assert!(!items.is_empty(), "empty array at {path}");
                for (n, item) in items.iter().enumerate() {
                    check_value(&format!("{path}[{n}]"), item);
                }
            }
            Value::Object(map) => {
                assert!(!map.is_empty(), "empty object at {path}");
                for (key, item) in map {
                    check_value(&format!("{path}.{key}"), item);
                }
            }
            Value::Null => panic!("null at {path}"),
            _ => {}
        }
    }

    fn is_date(text: &str) -> bool {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
    }

    fn is_date_time(text: &str) -> bool {
        chrono::DateTime::parse_from_rfc3339(text).is_ok()
    }

    #[test]
    fn resources_have_the_shape_of_valid_r4() {
        let g = Generator::new(DEFAULT_SEED);
        let mut deceased = 0;
        let mut invoices = 0;
        let mut eur = 0;
        let mut accented = 0;
        let mut several_given = 0;
        let patients = 5_000;
        for i in 0..patients {
            let r = g.record(i);
            check_value("Patient", &r.patient);
            check_value("Account", &r.account);
            let p = &r.patient;
            assert_eq!(p["id"], patient_id(i));
            assert!(is_date(p["birthDate"].as_str().unwrap_or("")), "{p}");
            let birth = p["birthDate"].as_str().unwrap_or("");
            assert!(("1925-01-01".."2025-01-01").contains(&birth), "{birth}");
            if let Some(when) = p.get("deceasedDateTime") {
                assert!(is_date_time(when.as_str().unwrap_or("")), "{when}");
                assert!(when.as_str().unwrap_or("") > birth);
                deceased += 1;
            }
            if p.get("deceasedBoolean").is_some() {
                deceased += 1;
            }
            assert!(
                ["male", "female", "other", "unknown"]
                    .contains(&p["gender"].as_str().unwrap_or(""))
            );
            let identifiers = p["identifier"].as_array().map_or(0, Vec::len);
            assert!((1..=2).contains(&identifiers));
            assert_eq!(p["identifier"][0]["system"], MRN_SYSTEM);
            let given = p["name"][0]["given"].as_array().map_or(0, Vec::len);
            assert!((1..=3).contains(&given));
            if given > 1 {
                several_given += 1;
            }
            if !p["name"][0]["family"].as_str().unwrap_or("").is_ascii() {
                accented += 1;
            }
            let address = &p["address"][0];
            for field in ["line", "city", "postalCode", "country"] {
                assert!(address.get(field).is_some(), "{field} missing in {address}");
            }
            if let Some(email) = p["telecom"]
                .as_array()
                .and_then(|t| t.iter().find(|c| c["system"] == "email"))
            {
                let email = email["value"].as_str().unwrap_or("");
                assert!(
                    email.is_ascii() && email.contains('@') && !email.starts_with('.'),
                    "{email}"
                );
            }
            assert_eq!(
                r.account["subject"][0]["reference"],
                format!("Patient/{}", patient_id(i))
            );
            assert!(r.invoices.len() as u64 <= MAX_INVOICES);
            for (k, invoice) in r.invoices.iter().enumerate() {
                check_value("Invoice", invoice);
                assert_eq!(invoice["id"], invoice_id(i, k as u64 + 1));
                assert!(
                    is_date_time(invoice["date"].as_str().unwrap_or("")),
                    "{invoice}"
                );
                let date = invoice["date"].as_str().unwrap_or("");
                assert!(("2019-01-01".."2026-11-01").contains(&date), "{date}");
                assert!(&date[..10] >= birth);
                assert!(
                    ["draft", "issued", "balanced", "cancelled"]
                        .contains(&invoice["status"].as_str().unwrap_or(""))
                );
                assert_eq!(
                    invoice["account"]["reference"],
                    format!("Account/{}", account_id(i))
                );
                let gross: f64 = invoice["totalGross"]["value"]
                    .to_string()
                    .parse()
                    .unwrap_or(-1.0);
                let net: f64 = invoice["totalNet"]["value"]
                    .to_string()
                    .parse()
                    .unwrap_or(-1.0);
                assert!(gross > 0.0 && gross >= net, "{invoice}");
                if invoice["totalGross"]["currency"] == "EUR" {
                    eur += 1;
                }
                invoices += 1;
            }
        }
        for n in 1..=ORGANIZATIONS {
            check_value("Organization", &g.organization(n));
        }
        for n in 1..=PRACTITIONERS {
            check_value("Practitioner", &g.practitioner(n));
        }
        let per_mille = |n: u64| n * 1000 / patients;
        assert!(
            (25..=80).contains(&per_mille(deceased)),
            "deceased {deceased}"
        );
        assert!(
            per_mille(several_given) > 300,
            "several given names: {several_given}"
        );
        assert!(
            per_mille(accented) > 100,
            "accented family names: {accented}"
        );
        assert!(eur > 0);
        // About two invoices per patient.
        assert!(
            (invoices * 10 / patients) >= 18 && (invoices * 10 / patients) <= 25,
            "{invoices}"
        );
    }

    #[test]
    fn monetary_values_keep_two_decimals() {
        let r = Generator::new(DEFAULT_SEED).record(3);
        let text = serde_json::to_string(&r.invoices).unwrap_or_default();
        assert!(text.contains(r#""currency":"#));
        let value = r
            .invoices
            .first()
            .map(|i| i["totalGross"]["value"].to_string())
            .unwrap_or_default();
        if !value.is_empty() {
            assert!(
                value.split('.').nth(1).is_some_and(|d| d.len() == 2),
                "{value}"
            );
        }
    }

    /// The reserved values are carried by the reserved Patients only, so that the
    /// selective searches return as many rows at every scale.
    #[test]
    fn reserved_values_are_rare() {
        let g = Generator::new(DEFAULT_SEED);
        let prefix = normalize(reserved::RARE_FAMILY_PREFIX);
        assert_eq!(prefix, "thordar");
        // No ordinary family name starts with the reserved prefix.
        for names in [
            &ENGLISH,
            &HISPANIC,
            &FRENCH,
            &GERMAN,
            &POLISH,
            &SCANDINAVIAN,
            &IRISH,
            &VIETNAMESE,
            &TURKISH,
            &CZECH,
        ] {
            for family in names.family.iter().chain(names.female).chain(names.male) {
                assert!(!normalize(family).starts_with(&prefix), "{family}");
                let f = family_for(Culture::Polish, family, true);
                assert!(!normalize(&f).starts_with(&prefix));
            }
        }
        let mut rare_family = Vec::new();
        let mut window = Vec::new();
        let mut nunavut = Vec::new();
        let mut big = Vec::new();
        let mut holiday = Vec::new();
        let mut cancelled_rare = Vec::new();
        let patients = 12_000;
        for i in 0..patients {
            let r = g.record(i);
            let p = &r.patient;
            if families(&r)
                .iter()
                .any(|f| normalize(f).starts_with(&prefix))
            {
                rare_family.push(i);
                if r.invoices.iter().any(|inv| inv["status"] == "cancelled") {
                    cancelled_rare.push(i);
                }
                assert!(r.invoices.len() >= 2);
            }
            let birth = p["birthDate"].as_str().unwrap_or("");
            if (reserved::BIRTH_WINDOW_START..reserved::BIRTH_WINDOW_END).contains(&birth) {
                window.push(i);
            }
            if p["address"][0]["state"]
                .as_str()
                .is_some_and(|s| normalize(s).starts_with("nu"))
            {
                nunavut.push((i, p["gender"] == "female"));
            }
            for invoice in &r.invoices {
                let gross: f64 = invoice["totalGross"]["value"]
                    .to_string()
                    .parse()
                    .unwrap_or(0.0);
                if gross > reserved::BIG_BILL_THRESHOLD as f64 {
                    big.push(i);
                } else {
                    assert!(gross < 20_000.0, "{gross}");
                }
                let date = invoice["date"].as_str().unwrap_or("");
                if date.get(5..10) == Some("12-25") || date.get(5..10) == Some("01-01") {
                    assert!(date.starts_with(reserved::HOLIDAY));
                    assert_eq!(invoice["status"], "issued");
                    holiday.push(i);
                }
            }
        }
        assert_eq!(rare_family, reserved::RARE_FAMILY);
        assert_eq!(cancelled_rare, reserved::RARE_FAMILY_CANCELLED);
        assert_eq!(
            window,
            reserved::BIRTH_WINDOW
                .iter()
                .map(|(i, _)| *i)
                .collect::<Vec<_>>()
        );
        assert_eq!(nunavut, reserved::RARE_STATE_PATIENTS);
        assert_eq!(big, reserved::BIG_BILL);
        assert_eq!(holiday, reserved::HOLIDAY_PATIENTS);
        let mut all = reserved::all();
        all.sort_unstable();
        let before = all.len();
        all.dedup();
        assert_eq!(before, all.len(), "reserved sets overlap");
        assert!(all.iter().all(|&i| i < 1000));
        assert!(g.record(reserved::ACCOUNT_PATIENT).invoices.len() >= 2);
    }

    #[test]
    fn gendered_family_names() {
        assert_eq!(family_for(Culture::Polish, "Kowalski", true), "Kowalska");
        assert_eq!(family_for(Culture::Polish, "Czarnecki", true), "Czarnecka");
        assert_eq!(family_for(Culture::Polish, "Kowalski", false), "Kowalski");
        assert_eq!(family_for(Culture::Czech, "Novák", true), "Nováková");
        assert_eq!(family_for(Culture::Czech, "Černý", true), "Černá");
        assert_eq!(family_for(Culture::Czech, "Svoboda", true), "Svobodová");
        assert_eq!(
            ascii_fold("Łukasz Wiśniewski-Øster"),
            "lukaszwisniewskioster"
        );
    }
}
