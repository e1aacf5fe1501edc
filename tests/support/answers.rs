//! `identify --json` answers in one short line each, so tests can compare whole answers exactly;
//! and [`identify_both`], which asks the store and the dataset alike.

use serde_json::Value;

use super::sandbox::{Sandbox, assert_code, stdout};

/// The first 12 hex characters of a digest, as [`summary`] writes an image a moved tag now names.
pub fn short(digest: &str) -> &str {
    &digest[7..19]
}

/// An official image found: `platform [tag tag>abcdef012345 tag>?]` (`>`: the tag has moved, and
/// now names that image, or one unknown).
pub fn named(v: &Value) -> String {
    let tags: Vec<String> = v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t["tag"].as_str().unwrap();
            match (t["current"].as_bool().unwrap(), t["now"].as_str()) {
                (true, _) => name.to_owned(),
                (false, Some(now)) => format!("{name}>{}", short(now)),
                (false, None) => format!("{name}>?"),
            }
        })
        .collect();
    format!(
        "{} [{}]",
        v["platform"].as_str().unwrap_or("-"),
        tags.join(" ")
    )
}

/// One answer: `result [= exact…] [base L/T+N images] [< L ancestry…]`.
pub fn summary(v: &Value) -> String {
    let mut out = v["result"].as_str().unwrap().to_owned();
    for e in v["exact"].as_array().unwrap() {
        out += &format!(" = {}", named(e));
    }
    if !v["base"].is_null() {
        let b = &v["base"];
        let images: Vec<String> = b["images"].as_array().unwrap().iter().map(named).collect();
        out += &format!(
            " base {}/{}+{} {}",
            b["layers"],
            b["of"],
            b["on_top"],
            images.join(" | ")
        );
    }
    for level in v["ancestry"].as_array().unwrap() {
        let images: Vec<String> = level["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(named)
            .collect();
        out += &format!(" < {} {}", level["layers"], images.join(" | "));
    }
    out
}

/// `identify` of `inputs` from the store and from the dataset `d.ndjson` of the sandbox: both
/// outputs (JSON and text) must be equal, and exit with `code`; the JSON objects.
pub fn identify_both(sandbox: &Sandbox, inputs: &[&str], code: i32) -> Vec<Value> {
    let mut json_out = None;
    for json in [true, false] {
        let mut from_store = vec!["identify"];
        if json {
            from_store.push("--json");
        }
        from_store.extend_from_slice(inputs);
        let mut from_dataset = from_store.clone();
        from_dataset.extend(["--dataset", "d.ndjson"]);
        let store = sandbox.command(&from_store).output().unwrap();
        assert_code(&store, code, "identify from the store");
        let dataset = sandbox.command(&from_dataset).output().unwrap();
        assert_code(&dataset, code, "identify from the dataset");
        assert_eq!(
            stdout(&store),
            stdout(&dataset),
            "the store and the dataset answer differently"
        );
        if json {
            json_out = Some(stdout(&store));
        }
    }
    json_out
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
