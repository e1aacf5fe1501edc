//! `digestmap identify INPUT... [--dataset FILE]`: which official image is each saved image, or
//! which official image was it built FROM.
//!
//! Every input is read first (each failure reported, naming the input, the rest still
//! answered), then the index: the dataset read once for all of them, or else a snapshot of the
//! store (`--db`), which must hold what `enrich` learned; then each image is matched. Answers go to
//! stdout (a block per image, or one JSON object per image with `--json`), errors to stderr.
//! Exit 0: every image identified (exact or base); 7: some image has no official base found
//! (the others are still answered); 1: an input or the dataset could not be read; 2: usage (an
//! ambiguous prefix, `-` twice, no dataset file, no store, a store not enriched yet).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::path::Path;

use digestmap::dataset::images::{DatasetImages, Wanted};
use digestmap::identify::SavedImage;
use digestmap::identify::input::{self, Input};
use digestmap::identify::matching::{
    self, Found, Identification, ImageIndex, PrefixMatch, Verdict,
};
use digestmap::registry::config::chain_ids;
use digestmap::store::Store;
use digestmap::store::images::StoreImages;
use digestmap::text::printable;
use serde_json::{Value, json};

use crate::cli::{Cli, IdentifyArgs};
use crate::ui::Ui;

/// Exit code when some image has no official base image found.
pub const NOT_FOUND: u8 = 7;

/// The images of one input, or why it could not be read.
struct Read {
    input: Input,
    images: Result<Vec<SavedImage>, String>,
}

pub fn run(cli: &Cli, args: &IdentifyArgs, ui: &Ui) -> u8 {
    let inputs: Vec<Input> = args.inputs.iter().map(|t| Input::parse(t)).collect();
    let stdin_inputs = inputs.iter().filter(|i| **i == Input::Stdin).count();
    let dataset_stdin = args.dataset.as_ref().is_some_and(|d| d.as_os_str() == "-");
    if stdin_inputs + usize::from(dataset_stdin) > 1 {
        ui.error("standard input (`-`) can be read only once: as one INPUT or as --dataset");
        return super::USAGE;
    }
    let mut reads: Vec<Read> = inputs
        .into_iter()
        .map(|input| {
            let images = match &input {
                Input::Stdin => input::read_stream(io::stdin().lock()).map_err(|e| e.to_string()),
                Input::Path(path) => input::read_path(path).map_err(|e| e.to_string()),
                Input::Digest(query) => Ok(vec![SavedImage {
                    label: "bare digest".into(),
                    image_id: None,
                    digests: query.digest().into_iter().collect(),
                    diff_ids: None,
                    platform: None,
                    repo_tags: Vec::new(),
                }]),
            };
            Read { input, images }
        })
        .collect();

    let mut wanted = Wanted::default();
    for read in &reads {
        if let Input::Digest(query) = &read.input
            && query.digest().is_none()
        {
            wanted.prefixes.push(query.hex.clone());
        }
        for image in read.images.iter().flatten() {
            wanted
                .digests
                .extend(image.image_id.iter().chain(&image.digests));
            if let Some(diff_ids) = &image.diff_ids {
                wanted.chains.extend(chain_ids(diff_ids));
            }
        }
    }

    match &args.dataset {
        Some(dataset) => match load_dataset(dataset, &wanted) {
            Ok(index) => answer(args, ui, &mut reads, &index, &|e| match e {}),
            Err((message, code)) => {
                ui.error(&message);
                code
            }
        },
        None => from_store(cli, args, ui, &mut reads, &wanted),
    }
}

/// Reads the dataset once for every question (a file twice when an index digest's platform
/// images' config lines came before its manifest lines), or says why not (with the exit code).
fn load_dataset(dataset: &Path, wanted: &Wanted) -> Result<DatasetImages, (String, u8)> {
    let stdin = dataset.as_os_str() == "-";
    let shown = if stdin {
        "on standard input".to_owned()
    } else {
        dataset.display().to_string()
    };
    let damaged = |e: &dyn std::fmt::Display| {
        (
            format!("the dataset {}: {e}", printable(&shown)),
            super::ERROR,
        )
    };
    let unreadable = |e: io::Error| {
        (
            format!("cannot read the dataset {}: {e}", printable(&shown)),
            if e.kind() == io::ErrorKind::NotFound {
                super::USAGE
            } else {
                super::ERROR
            },
        )
    };
    let open = || {
        File::open(dataset)
            .map(|file| BufReader::with_capacity(1 << 16, file))
            .map_err(unreadable)
    };
    let mut index = if stdin {
        DatasetImages::load(io::stdin().lock(), wanted)
    } else {
        DatasetImages::load(open()?, wanted)
    }
    .map_err(|e| damaged(&e))?;
    let unresolved = index.unresolved();
    if let Some(first) = unresolved.first() {
        if stdin {
            return Err((
                format!(
                    "the dataset on standard input: {} platform image(s) of the index digest(s) asked for (the first: image ID {first}) have config lines that came before the manifest lines naming them, or none; standard input is read only once: give the dataset as a file (--dataset FILE), which is read again for them",
                    unresolved.len()
                ),
                super::ERROR,
            ));
        }
        index.read_again(open()?).map_err(|e| damaged(&e))?;
    }
    Ok(index)
}

/// Answers from a snapshot of the store (`--db`), which must hold what `enrich` learned.
fn from_store(cli: &Cli, args: &IdentifyArgs, ui: &Ui, reads: &mut [Read], wanted: &Wanted) -> u8 {
    let store = match Store::open_read(&cli.db) {
        Ok(store) => store,
        Err(e) => {
            ui.error(&e.to_string());
            return super::store_error_code(&e);
        }
    };
    let snapshot = match store.snapshot() {
        Ok(snapshot) => snapshot,
        Err(e) => {
            ui.error(&e.to_string());
            return super::store_error_code(&e);
        }
    };
    match StoreImages::has_enrichment(&snapshot) {
        Ok(true) => {}
        Ok(false) => {
            ui.error(&format!(
                "the store {} holds no image IDs or layer chains yet: run `digestmap enrich` (after a crawl), then identify again; or give a dataset with --dataset",
                printable(&cli.db.display().to_string())
            ));
            return super::USAGE;
        }
        Err(e) => {
            let e = store.error(e);
            ui.error(&e.to_string());
            return super::store_error_code(&e);
        }
    }
    let index = match StoreImages::load(&snapshot, wanted) {
        Ok(index) => index,
        Err(e) => {
            let e = store.error(e);
            ui.error(&e.to_string());
            return super::store_error_code(&e);
        }
    };
    answer(args, ui, reads, &index, &|e| store.error(e).to_string())
}

/// Matches every image read against `index` and prints the answers; the exit code.
fn answer<I: ImageIndex>(
    args: &IdentifyArgs,
    ui: &Ui,
    reads: &mut [Read],
    index: &I,
    shown: &dyn Fn(I::Error) -> String,
) -> u8 {
    let mut failed = false;
    let mut ambiguous = false;
    let mut none = false;
    let mut stdout = io::stdout().lock();
    let mut printed = false;
    for read in reads.iter_mut() {
        let input_shown = read.input.shown();
        let images = match &mut read.images {
            Ok(images) => images,
            Err(e) => {
                let _ = stdout.flush();
                ui.error(&format!("{}: {}", printable(&input_shown), printable(e)));
                failed = true;
                continue;
            }
        };
        if let Input::Digest(query) = &read.input
            && query.digest().is_none()
        {
            let resolved = match index.resolve_prefix(&query.hex) {
                Ok(resolved) => resolved,
                Err(e) => {
                    let _ = stdout.flush();
                    ui.error(&shown(e));
                    return super::ERROR;
                }
            };
            match resolved {
                PrefixMatch::One(digest) => images[0].digests = vec![digest],
                PrefixMatch::None => {}
                PrefixMatch::Ambiguous(a, b) => {
                    let _ = stdout.flush();
                    ui.error(&format!(
                        "{}: ambiguous: matches {a} and {b}; give more of the digest",
                        printable(&query.text)
                    ));
                    ambiguous = true;
                    continue;
                }
            }
        }
        for image in images.iter() {
            let found = match matching::identify(image, index) {
                Ok(found) => found,
                Err(e) => {
                    let _ = stdout.flush();
                    ui.error(&shown(e));
                    return super::ERROR;
                }
            };
            none |= found.verdict == Verdict::NotFound;
            let text = if args.json {
                format!("{}\n", as_json(&input_shown, image, &found))
            } else {
                let gap = if printed { "\n" } else { "" };
                format!("{gap}{}", as_text(&input_shown, image, &found))
            };
            printed = true;
            if let Err(e) = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                return super::stdout_error(ui, &e);
            }
        }
    }
    if ambiguous {
        super::USAGE
    } else if failed {
        super::ERROR
    } else if none {
        NOT_FOUND
    } else {
        super::OK
    }
}

/// The block for people: what the image is, its base and ancestry, every tag's state.
fn as_text(input: &str, image: &SavedImage, found: &Identification) -> String {
    let mut out = String::new();
    let _ = write!(out, "{}: {}", printable(input), printable(&image.label));
    if !image.repo_tags.is_empty() {
        let _ = write!(out, " ({})", printable(&image.repo_tags.join(", ")));
    }
    out.push('\n');
    if let Some(id) = &image.image_id {
        let _ = writeln!(out, "  image ID   {id}");
    }
    for digest in &image.digests {
        let _ = writeln!(out, "  digest     {digest}");
    }
    if let Some(platform) = &image.platform {
        let _ = writeln!(out, "  platform   {}", printable(platform));
    }
    let total = found.total_layers;
    if let Some(total) = total {
        let _ = writeln!(out, "  layers     {total}");
    }
    let mut levels = found.ancestry.iter();
    match found.verdict {
        Verdict::Exact => {
            match found.exact.len() {
                1 => {
                    let _ = writeln!(out, "  exact      an official image");
                }
                n => {
                    let _ = writeln!(out, "  exact      {n} official images");
                }
            }
            for f in &found.exact {
                found_text(&mut out, f);
            }
        }
        Verdict::Base => {
            if let Some(level) = levels.next() {
                let total = total.unwrap_or(level.layers);
                let _ = writeln!(
                    out,
                    "  base       {} of {total} layers, {} on top{}",
                    level.layers,
                    total - level.layers,
                    ambiguity(level.images.len())
                );
                for f in &level.images {
                    found_text(&mut out, f);
                }
            }
        }
        Verdict::NotFound => {
            let _ = writeln!(out, "  base       no official base image found");
        }
    }
    let rest: Vec<String> = levels
        .map(|level| {
            let names: Vec<String> = level.images.iter().map(name).collect();
            format!(
                "{} ({} of {} layers)",
                names.join(" or "),
                level.layers,
                total.unwrap_or(level.layers)
            )
        })
        .collect();
    if !rest.is_empty() {
        let _ = writeln!(out, "  ancestry   {}", printable(&rest.join(" → ")));
    }
    for note in &found.notes {
        let _ = writeln!(out, "  note       {}", printable(note));
    }
    out
}

fn ambiguity(count: usize) -> String {
    if count > 1 {
        format!("; ambiguous: {count} official images have these layers")
    } else {
        String::new()
    }
}

fn name(found: &Found) -> String {
    found
        .tags
        .first()
        .map(|t| t.repo_tag.clone())
        .or_else(|| found.image.image_id.map(|d| d.to_string()))
        .unwrap_or_default()
}

fn found_text(out: &mut String, found: &Found) {
    let image = &found.image;
    let _ = write!(out, "    {}", printable(&name(found)));
    if let Some(platform) = &image.platform {
        let _ = write!(out, " ({})", printable(platform));
    }
    out.push('\n');
    match &image.image_id {
        Some(id) => {
            let _ = writeln!(out, "      image ID  {id}");
        }
        None => {
            let _ = writeln!(out, "      image ID  not known yet (not enriched)");
        }
    }
    if let Some(version) = &image.os_version {
        let _ = writeln!(out, "      os        {}", printable(version));
    }
    let current: Vec<&str> = found
        .tags
        .iter()
        .filter(|t| t.current)
        .map(|t| t.repo_tag.as_str())
        .collect();
    let _ = writeln!(
        out,
        "      current   {}",
        if current.is_empty() {
            "none: every tag has moved on".to_owned()
        } else {
            printable(&current.join(", ")).into_owned()
        }
    );
    let moved: Vec<String> = found
        .tags
        .iter()
        .filter(|t| !t.current)
        .map(|t| match &t.now {
            Some(now) => format!("{} (now {now})", t.repo_tag),
            None => t.repo_tag.clone(),
        })
        .collect();
    if !moved.is_empty() {
        let _ = writeln!(out, "      moved     {}", printable(&moved.join(", ")));
    }
    let _ = writeln!(
        out,
        "      seen      {} to {}",
        printable(&image.first_seen),
        printable(&image.last_seen)
    );
}

/// One JSON object per image (documented in the README).
fn as_json(input: &str, image: &SavedImage, found: &Identification) -> Value {
    let mut levels = found.ancestry.iter();
    let base = match found.verdict {
        Verdict::Base => levels.next().map(|level| {
            let total = found.total_layers.unwrap_or(level.layers);
            json!({
                "layers": level.layers,
                "of": total,
                "on_top": total - level.layers,
                "images": level.images.iter().map(found_json).collect::<Vec<_>>(),
            })
        }),
        _ => None,
    };
    json!({
        "input": input,
        "image": image.label,
        "repo_tags": image.repo_tags,
        "image_id": image.image_id.map(|d| d.to_string()),
        "digests": image.digests.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "platform": image.platform,
        "layers": found.total_layers,
        "result": found.verdict.as_str(),
        "exact": found.exact.iter().map(found_json).collect::<Vec<_>>(),
        "indexes": found.indexes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "base": base,
        "ancestry": levels.map(|level| json!({
            "layers": level.layers,
            "images": level.images.iter().map(found_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "notes": found.notes,
    })
}

fn found_json(found: &Found) -> Value {
    let image = &found.image;
    let digests: BTreeSet<String> = image.manifests.iter().map(ToString::to_string).collect();
    json!({
        "image_id": image.image_id.map(|d| d.to_string()),
        "platform": image.platform,
        "os_version": image.os_version,
        "manifests": digests,
        "tags": found.tags.iter().map(|t| json!({
            "tag": t.repo_tag,
            "current": t.current,
            "now": t.now.map(|d| d.to_string()),
        })).collect::<Vec<_>>(),
        "first_seen": image.first_seen,
        "last_seen": image.last_seen,
        "enriched": image.diff_ids.is_some(),
    })
}
