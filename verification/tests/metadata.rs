//! Every published crate says what it is on crates.io: keywords, categories
//! and a readme that exists; and no manifest names a repository, as there is
//! no public one.
#![cfg(not(loom))]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn manifest(dir: &Path) -> toml::Table {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    text.parse().unwrap()
}

#[test]
fn published_crates_have_keywords_categories_and_a_readme() {
    let root = root();
    let workspace = manifest(&root);
    assert!(
        workspace["workspace"]["package"].get("repository").is_none(),
        "the workspace names a repository"
    );
    let members = workspace["workspace"]["members"].as_array().unwrap();
    let mut published = Vec::new();
    for member in members {
        let dir = root.join(member.as_str().unwrap());
        let m = manifest(&dir);
        let p = m["package"].as_table().unwrap();
        let name = p["name"].as_str().unwrap();
        assert!(p.get("repository").is_none(), "{name} names a repository");
        if p.get("publish").and_then(toml::Value::as_bool) == Some(false) {
            continue;
        }
        published.push(name.to_owned());
        let list = |key: &str| p.get(key).and_then(toml::Value::as_array).map_or(0, Vec::len);
        assert!((1..=5).contains(&list("keywords")), "{name}: keywords");
        assert!(list("categories") >= 1, "{name}: categories");
        let readme = p.get("readme").and_then(toml::Value::as_str);
        let readme = readme.unwrap_or_else(|| panic!("{name}: no readme"));
        assert!(dir.join(readme).is_file(), "{name}: readme {readme} is missing");
    }
    published.sort();
    assert_eq!(
        published,
        [
            "upbit-limiter-async-std",
            "upbit-limiter-core",
            "upbit-limiter-embassy",
            "upbit-limiter-http",
            "upbit-limiter-ops",
            "upbit-limiter-redis",
            "upbit-limiter-sim",
            "upbit-limiter-tokio"
        ]
    );
}
