//! The environment layer: `UPBIT_RATE_LIMIT_<GROUP>_<SETTING>` and friends.
//!
//! Variables are taken as `(name, value)` pairs, so tests (and embedders
//! with their own source of settings) never touch the process environment.

use core::str::FromStr;

use upbit_limiter_core::{Group, Preset};

use super::fields::{group_field_by_env, Raw, SimpleField, EMERGENCY_FIELDS, HEALTH_FIELDS};
use super::{env_name, Issue, Layers, Origin, Problem, Set, ENV_FILE, ENV_PREFIX};

/// Where a group variable's settings go.
#[derive(Clone, Copy)]
enum Target {
    All,
    Group(Group),
}

/// `(name, target)` for every group-like prefix, longest first so that
/// `ORDER_CANCEL_ALL_RPS` is not read as group `ORDER`, setting `CANCEL_ALL_RPS`.
fn targets() -> Vec<(String, Target)> {
    let mut t: Vec<(String, Target)> = Group::ALL
        .iter()
        .map(|&g| (env_name(g), Target::Group(g)))
        .collect();
    t.push(("ALL".to_owned(), Target::All));
    t.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
    t
}

fn simple<T>(
    rest: &str,
    var: &str,
    value: &str,
    fields: &[SimpleField<T>],
    target: &mut T,
    issues: &mut Vec<Issue>,
) {
    let at = |problem| Issue {
        origin: Origin::Env { var: var.to_owned() },
        key: var.to_owned(),
        problem,
    };
    match fields.iter().find(|f| f.env == rest) {
        Some(f) => {
            if let Err(p) = (f.store)(target, Raw::Env(value)) {
                issues.push(at(p));
            }
        }
        None => issues.push(at(Problem::UnknownKey)),
    }
}

/// Reads every variable with [`ENV_PREFIX`] into the env layers of `layers`.
pub(super) fn read<I, K, V>(env: I, layers: &mut Layers, issues: &mut Vec<Issue>)
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let targets = targets();
    for (k, v) in env {
        let (var, value) = (k.as_ref(), v.as_ref());
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let origin = Origin::Env { var: var.to_owned() };
        let issue = |problem| Issue {
            origin: Origin::Env { var: var.to_owned() },
            key: var.to_owned(),
            problem,
        };
        if var == ENV_FILE {
            continue;
        }
        if rest == "PRESET" {
            match Preset::from_str(value) {
                Ok(p) => {
                    layers.preset = Some(Set {
                        value: p,
                        origin,
                        key: var.to_owned(),
                    })
                }
                Err(_) => issues.push(issue(Problem::Expected {
                    what: "korea or global",
                    found: format!("{value:?}"),
                })),
            }
            continue;
        }
        if rest == "POCKET" {
            match upbit_limiter_core::upbit::PocketId::new(value) {
                Ok(p) => {
                    layers.pocket = Some(Set {
                        value: p,
                        origin,
                        key: var.to_owned(),
                    })
                }
                Err(e) => issues.push(issue(Problem::Pocket(e))),
            }
            continue;
        }
        if let Some(field) = rest.strip_prefix("HEALTH_") {
            simple(field, var, value, HEALTH_FIELDS, &mut layers.health, issues);
            continue;
        }
        if let Some(field) = rest.strip_prefix("EMERGENCY_") {
            simple(field, var, value, EMERGENCY_FIELDS, &mut layers.emergency, issues);
            continue;
        }
        #[cfg(feature = "redis")]
        if let Some(field) = rest.strip_prefix("SHARED_") {
            simple(
                field,
                var,
                value,
                super::fields::SHARED_FIELDS,
                &mut layers.shared,
                issues,
            );
            continue;
        }
        let found = targets.iter().find_map(|(name, target)| {
            let field = rest.strip_prefix(name.as_str())?.strip_prefix('_')?;
            group_field_by_env(field).map(|f| (*target, f))
        });
        let Some((target, field)) = found else {
            let named_group = targets.iter().any(|(name, _)| {
                rest.strip_prefix(name.as_str())
                    .is_some_and(|r| r.starts_with('_'))
            });
            issues.push(issue(if named_group {
                Problem::UnknownKey
            } else {
                Problem::UnknownVariable
            }));
            continue;
        };
        let layer = match target {
            Target::All => &mut layers.env_all,
            Target::Group(g) => &mut layers.env_groups[g.index()],
        };
        if let Err(p) = (field.store)(layer, Raw::Env(value), origin, var) {
            issues.push(issue(p));
        }
    }
}
