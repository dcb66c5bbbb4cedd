//! The TOML layer: walks the spanned document so that every problem keeps its
//! line and column, and one bad value does not hide the next.

use core::str::FromStr;

use toml::de::{DeTable, DeValue};
use toml::Spanned;
use upbit_limiter_core::upbit::{PocketId, Scope};
use upbit_limiter_core::{Group, Preset};

use super::fields::{group_field_by_file, GroupLayer, Raw, SimpleField, EMERGENCY_FIELDS, HEALTH_FIELDS};
use super::{Issue, Layers, Origin, Problem, Set, TomlText};

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

struct Walker<'d, 'v> {
    doc: TomlText<'d>,
    issues: &'v mut Vec<Issue>,
}

impl Walker<'_, '_> {
    fn origin(&self, span: &core::ops::Range<usize>) -> Origin {
        let (line, column) = position(self.doc.text, span.start);
        Origin::File {
            name: self.doc.name.to_owned(),
            line,
            column,
        }
    }

    fn push(&mut self, span: &core::ops::Range<usize>, key: String, problem: Problem) {
        let origin = self.origin(span);
        self.issues.push(Issue { origin, key, problem });
    }

    fn table<'a, 'i>(&mut self, value: &'a Spanned<DeValue<'i>>, key: &str) -> Option<&'a DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                let found = match value.get_ref() {
                    DeValue::Array(_) => "an array".to_owned(),
                    other => other.type_str().to_owned(),
                };
                self.push(
                    &value.span(),
                    key.to_owned(),
                    Problem::Expected {
                        what: "a table",
                        found,
                    },
                );
                None
            }
        }
    }

    fn group_table(&mut self, value: &Spanned<DeValue<'_>>, prefix: &str, layer: &mut GroupLayer) {
        let Some(table) = self.table(value, prefix) else {
            return;
        };
        for (k, v) in table.iter() {
            let name = k.get_ref().as_ref();
            if matches!(name, "adaptive" | "breaker") {
                let sub_prefix = format!("{prefix}.{name}");
                let Some(sub) = self.table(v, &sub_prefix) else {
                    continue;
                };
                for (sk, sv) in sub.iter() {
                    let field = format!("{name}.{}", sk.get_ref());
                    self.group_value(&field, &sk.span(), sv, prefix, layer);
                }
            } else {
                self.group_value(name, &k.span(), v, prefix, layer);
            }
        }
    }

    fn group_value(
        &mut self,
        field: &str,
        key_span: &core::ops::Range<usize>,
        value: &Spanned<DeValue<'_>>,
        prefix: &str,
        layer: &mut GroupLayer,
    ) {
        let key = format!("{prefix}.{field}");
        let Some(spec) = group_field_by_file(field) else {
            self.push(key_span, key, Problem::UnknownKey);
            return;
        };
        let origin = self.origin(&value.span());
        if let Err(problem) = (spec.store)(layer, Raw::Toml(value.get_ref()), origin, &key) {
            self.push(&value.span(), key, problem);
        }
    }

    fn simple_table<T>(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        prefix: &str,
        fields: &[SimpleField<T>],
        target: &mut T,
    ) {
        let Some(table) = self.table(value, prefix) else {
            return;
        };
        for (k, v) in table.iter() {
            let key = format!("{prefix}.{}", k.get_ref());
            match fields.iter().find(|f| f.file == k.get_ref().as_ref()) {
                Some(f) => {
                    if let Err(problem) = (f.store)(target, Raw::Toml(v.get_ref())) {
                        self.push(&v.span(), key, problem);
                    }
                }
                None => self.push(&k.span(), key, Problem::UnknownKey),
            }
        }
    }
}

/// Reads `doc` into the file layers of `layers`.
pub(super) fn read(doc: TomlText<'_>, layers: &mut Layers, issues: &mut Vec<Issue>) {
    let mut w = Walker { doc, issues };
    let (root, errors) = DeTable::parse_recoverable(doc.text);
    if !errors.is_empty() {
        // A broken document is not read further: what it seems to say is a guess.
        for e in errors {
            let span = e.span().unwrap_or(0..0);
            w.push(&span, String::new(), Problem::Syntax(e.message().to_owned()));
        }
        return;
    }
    for (k, v) in root.get_ref().iter() {
        let key = k.get_ref().as_ref();
        match key {
            "preset" => {
                let parsed = v.get_ref().as_str().and_then(|s| Preset::from_str(s).ok());
                match parsed {
                    Some(p) => {
                        let origin = w.origin(&v.span());
                        layers.preset = Some(Set {
                            value: p,
                            origin,
                            key: key.to_owned(),
                        });
                    }
                    None => w.push(
                        &v.span(),
                        key.to_owned(),
                        Problem::Expected {
                            what: "\"korea\" or \"global\"",
                            found: render(v.get_ref()),
                        },
                    ),
                }
            }
            "pocket" => match v.get_ref().as_str().map(PocketId::new) {
                Some(Ok(p)) => {
                    let origin = w.origin(&v.span());
                    layers.pocket = Some(Set {
                        value: p,
                        origin,
                        key: key.to_owned(),
                    });
                }
                Some(Err(e)) => w.push(&v.span(), key.to_owned(), Problem::Pocket(e)),
                None => w.push(
                    &v.span(),
                    key.to_owned(),
                    Problem::Expected {
                        what: "a pocket name",
                        found: render(v.get_ref()),
                    },
                ),
            },
            "pockets" => {
                let Some(pockets) = w.table(v, "pockets") else {
                    continue;
                };
                for (pk, pv) in pockets.iter() {
                    let name = pk.get_ref().as_ref();
                    let prefix = format!("pockets.{name}");
                    let pocket = match PocketId::new(name) {
                        Ok(p) => p,
                        Err(e) => {
                            w.push(&pk.span(), prefix, Problem::Pocket(e));
                            continue;
                        }
                    };
                    let Some(table) = w.table(pv, &prefix) else {
                        continue;
                    };
                    let own = layers.pockets.entry(pocket).or_default();
                    for (tk, tv) in table.iter() {
                        let key = format!("{prefix}.{}", tk.get_ref());
                        if tk.get_ref().as_ref() != "groups" {
                            w.push(&tk.span(), key, Problem::UnknownKey);
                            continue;
                        }
                        let Some(groups) = w.table(tv, &key) else {
                            continue;
                        };
                        for (gk, gv) in groups.iter() {
                            let name = gk.get_ref().as_ref();
                            let prefix = format!("{key}.{name}");
                            match Group::from_name(name) {
                                Some(g) if g.scope() == Scope::Ip => {
                                    w.push(&gk.span(), prefix, Problem::SharedByPockets(g))
                                }
                                Some(g) => w.group_table(
                                    gv,
                                    &prefix,
                                    own[g.index()].get_or_insert_with(GroupLayer::default),
                                ),
                                None => w.push(&gk.span(), prefix, Problem::UnknownGroup(name.to_owned())),
                            }
                        }
                    }
                }
            }
            "all" => w.group_table(v, "all", &mut layers.file_all),
            "groups" => {
                let Some(groups) = w.table(v, "groups") else {
                    continue;
                };
                for (gk, gv) in groups.iter() {
                    let name = gk.get_ref().as_ref();
                    let prefix = format!("groups.{name}");
                    match Group::from_name(name) {
                        Some(g) => w.group_table(gv, &prefix, &mut layers.file_groups[g.index()]),
                        None => w.push(&gk.span(), prefix, Problem::UnknownGroup(name.to_owned())),
                    }
                }
            }
            "health" => w.simple_table(v, "health", HEALTH_FIELDS, &mut layers.health),
            "emergency" => w.simple_table(v, "emergency", EMERGENCY_FIELDS, &mut layers.emergency),
            #[cfg(feature = "redis")]
            "shared" => w.simple_table(v, "shared", super::fields::SHARED_FIELDS, &mut layers.shared),
            _ => w.push(&k.span(), key.to_owned(), Problem::UnknownKey),
        }
    }
}

fn render(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("string {:?}", s.as_ref()),
        other => other.type_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::position;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 4), (1, 5));
        assert_eq!(position(text, 6), (2, 1));
        // "bé" is three bytes; the '=' at byte 10 is the fourth character.
        assert_eq!(position(text, 10), (2, 4));
        assert_eq!(position(text, 999), (3, 1));
    }
}
