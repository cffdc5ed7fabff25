//! Where the elements an expression selected sit in the resource's JSON, for the writers that
//! change them (FHIRPath Patch). Evaluation does not track locations: the search extraction
//! evaluates every expression on every write and needs none. A location is found afterwards,
//! by identity, in one walk of the resource for all the selected values.

use serde_json::Value;

/// One step down a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A property of an object.
    Key(String),
    /// An item of an array.
    Index(usize),
}

/// The place of a value in a resource: the steps from the root to it (none for the root).
pub type Location = Vec<Step>;

/// A step borrowed from the resource while it is walked.
#[derive(Clone, Copy)]
enum Borrowed<'v> {
    Key(&'v str),
    Index(usize),
}

/// The locations of `targets`, values inside `resource` (the [`Node::value`] of nodes an
/// evaluation on `resource` returned), found by identity rather than equal content: two equal
/// elements are two places. `None` for a value that is not part of `resource`.
///
/// [`Node::value`]: super::Node::value
pub fn locate(resource: &Value, targets: &[&Value]) -> Vec<Option<Location>> {
    let mut walk = Walk {
        targets,
        found: vec![None; targets.len()],
        missing: targets.len(),
        path: Vec::new(),
    };
    walk.visit(resource);
    walk.found
}

struct Walk<'t, 'v> {
    targets: &'t [&'t Value],
    found: Vec<Option<Location>>,
    /// Targets not found yet: the walk stops when there are none.
    missing: usize,
    path: Vec<Borrowed<'v>>,
}

impl<'v> Walk<'_, 'v> {
    fn visit(&mut self, value: &'v Value) {
        for (target, found) in self.targets.iter().zip(&mut self.found) {
            if found.is_none() && std::ptr::eq(*target, value) {
                *found = Some(
                    self.path
                        .iter()
                        .map(|step| match *step {
                            Borrowed::Key(key) => Step::Key(key.to_owned()),
                            Borrowed::Index(index) => Step::Index(index),
                        })
                        .collect(),
                );
                self.missing -= 1;
            }
        }
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if self.missing == 0 {
                        return;
                    }
                    self.path.push(Borrowed::Key(key));
                    self.visit(child);
                    self.path.pop();
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    if self.missing == 0 {
                        return;
                    }
                    self.path.push(Borrowed::Index(index));
                    self.visit(child);
                    self.path.pop();
                }
            }
            _ => {}
        }
    }
}
