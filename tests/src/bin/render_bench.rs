//! `make bench` part: template render throughput on the real corpus concatenated to at least
//! 50 MiB (scan with positions, plan, output), against a `regex::Regex::replace_all` baseline
//! doing only the replacement over the same input, in the same process and run.
//!
//! The render's output is what the API answers from: the template's text cut around the
//! values, never copied whole. Lines also show it turned into HTTP chunks, escaped into the
//! JSON answer, copied into a fresh
//! String, and written into a reused buffer; the regex baseline; a plain copy of the input
//! (the bound for any renderer that copies); and the same over the input cut into templates of
//! at most 10 MiB (the API's limit). Each line gives its ratio to the baseline.
//! `RENDER_BENCH_PARTS=1` also prints the scan, the plan, newline counting and the `{{` search
//! alone.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::string_slice,
    reason = "a bench harness: a panic fails the run that measures"
)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_shared::names::RepositoryName;
use berth_shared::package::{FileRecord, ImageRecord, PackageType, PackageVersion, VersionStatus};
use berth_shared::render::{Association, Template};
use berth_shared::service::package_type_for;
use berth_shared::template::MAX_TEMPLATE_BYTES;
use berth_tests::goals::{self, Goal};

const TARGET_BYTES: usize = 50 << 20;
const RUNS: usize = 5;
/// Turns of render and copy for the goal ratios.
const PAIRED_RUNS: usize = 15;
const PULL_KEY: &str = "eyJhdXRocyI6eyIxMjcuMC4wLjE6NTAwMCI6eyJ1c2VybmFtZSI6ImFjbWUifX19";

/// Every corpus file but the manifest, concatenated until at least [`TARGET_BYTES`].
fn corpus() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/ros");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let one: String = files.iter().map(|p| std::fs::read_to_string(p).expect("UTF-8 corpus file") + "\n").collect();
    let mut text = String::with_capacity(TARGET_BYTES + one.len());
    while text.len() < TARGET_BYTES {
        text.push_str(&one);
    }
    text
}

/// `text` cut at line ends into pieces of at most [`MAX_TEMPLATE_BYTES`].
fn chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let cut = if rest.len() <= MAX_TEMPLATE_BYTES {
            rest.len()
        } else {
            rest[..MAX_TEMPLATE_BYTES].rfind('\n').map_or(MAX_TEMPLATE_BYTES, |i| i + 1)
        };
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

/// An Available version for every association key of `template`.
fn associations(template: &Template<'_>) -> BTreeMap<String, Association> {
    let mut out = BTreeMap::new();
    for identifier in template.identifiers().iter().filter(|i| !i.kind.is_credential()) {
        let package_type = package_type_for(identifier.kind).expect("not a credential");
        let repository: String = identifier
            .name()
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { 'x' })
            .collect();
        let version = PackageVersion {
            package: format!("pkg_{repository}"),
            version: "v_1".into(),
            number: 1,
            package_type,
            status: VersionStatus::Available,
            images: match package_type {
                PackageType::File => Vec::new(),
                _ => vec![ImageRecord {
                    digest: Some(format!("sha256:{}", "ab".repeat(32))),
                    ..ImageRecord::unchecked(
                        RepositoryName::parse(&format!("acme/{repository}")).expect("repository"),
                        "v1",
                    )
                }],
            },
            file: (package_type == PackageType::File).then(|| FileRecord {
                file_name: "f.tgz".into(),
                size: Some(1),
                digest: Some("sha256:00".into()),
            }),
            reason: None,
            label: None,
            created_at: String::new(),
            updated_at: String::new(),
            untrusted: None,
        };
        let file_url = (package_type == PackageType::File).then(|| format!("https://berth.example/d/{repository}"));
        out.insert(identifier.key.to_owned(), Association::Found { version: Box::new(version), file_url });
    }
    out
}

/// Best wall time of [`RUNS`] runs of `work`, and its last result.
fn best<T>(mut work: impl FnMut() -> T) -> (Duration, T) {
    let mut fastest = Duration::MAX;
    let mut last = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = std::hint::black_box(work());
        fastest = fastest.min(start.elapsed());
        last = Some(out);
    }
    (fastest, last.expect("at least one run"))
}

/// Best wall times of `a` and of `b`, run in turn [`PAIRED_RUNS`] times: both see the same
/// moments of a neighbour's load, so their ratio holds where separate best-ofs do not.
fn paired<A, B>(mut a: impl FnMut() -> A, mut b: impl FnMut() -> B) -> (Duration, Duration) {
    let (mut fastest_a, mut fastest_b) = (Duration::MAX, Duration::MAX);
    for _ in 0..PAIRED_RUNS {
        let start = Instant::now();
        std::hint::black_box(a());
        fastest_a = fastest_a.min(start.elapsed());
        let start = Instant::now();
        std::hint::black_box(b());
        fastest_b = fastest_b.min(start.elapsed());
    }
    (fastest_a, fastest_b)
}

fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / time.as_secs_f64()
}

fn main() {
    let text = corpus();
    let scanned = Template::scan(&text);
    let associations = associations(&scanned);
    let identifiers = scanned.identifiers().len();
    let render = |text| {
        let template = Template::scan(text);
        let plan = template.plan(&associations, "127.0.0.1:5000", false).expect("the corpus renders");
        let rendered = template.render(&plan, Some(PULL_KEY)).expect("renders");
        (template, rendered)
    };

    if std::env::var_os("RENDER_BENCH_PARTS").is_some() {
        let (t, _) = best(|| Template::scan(&text).identifiers().len());
        eprintln!("part scan {:.0} MB/s ({t:.2?})", mb_per_s(text.len(), t));
        let (t, _) = best(|| scanned.plan(&associations, "127.0.0.1:5000", false).expect("plans").substitutions.len());
        eprintln!("part plan {:.0} MB/s ({t:.2?})", mb_per_s(text.len(), t));
        let (t, _) = best(|| bytecount::count(text.as_bytes(), b'\n'));
        eprintln!("part newlines {:.0} MB/s ({t:.2?})", mb_per_s(text.len(), t));
        let (t, _) = best(|| memchr::memmem::find_iter(text.as_bytes(), b"{{").count());
        eprintln!("part memmem {:.0} MB/s ({t:.2?})", mb_per_s(text.len(), t));
    }

    // Berth as the API renders: scan (positions included), decide every value, and cut the
    // template around them. The output is the template's own text and the values, in order:
    // the raw answer sends those pieces, the JSON answer escapes them as it writes.
    let (ours, len) = best(|| render(&text).1.len());

    // The pieces as the raw HTTP answer's chunks (slices of the request's bytes).
    let source = bytes::Bytes::from(text.clone());
    let source_text = std::str::from_utf8(&source).expect("UTF-8");
    let (as_chunks, chunked_len) =
        best(|| render(source_text).1.chunks(&source).iter().map(|c| c.len()).sum::<usize>());
    assert_eq!(chunked_len, len, "the chunks hold the whole output");

    // Escaped into a JSON answer's string, as the default answer does.
    let as_json = |text| {
        let rendered = render(text).1;
        let mut out = Vec::with_capacity(rendered.len() + rendered.len() / 8);
        rendered.write_json_string(&mut out);
        out.len()
    };
    let (as_json_time, json_len) = best(|| as_json(&text));
    assert!(json_len >= len + 2, "a JSON string at least as long as the text");

    // Copied into one String: fresh each time, and into one buffer reused across runs.
    let (materialised, rendered) = best(|| render(&text).1.to_string());
    assert_eq!(rendered.len(), len);
    let mut buffer = String::with_capacity(len);
    let (reused, _) = best(|| {
        buffer.clear();
        render(&text).1.write_into(&mut buffer);
        buffer.len()
    });
    assert!(buffer == rendered, "the reused buffer holds the same output");

    // Baseline: one regex, replace_all, values from a map by key.
    let values: HashMap<String, String> = {
        let plan = scanned.plan(&associations, "127.0.0.1:5000", false).expect("the corpus renders");
        plan.substitutions
            .iter()
            .map(|s| {
                let value = match &s.value {
                    berth_shared::render::Value::Text(text) => text.to_string(),
                    berth_shared::render::Value::PullKey => PULL_KEY.to_owned(),
                };
                (s.key.to_owned(), value)
            })
            .collect()
    };
    let regex =
        regex::Regex::new(r"\{\{ *computenest::(acrimage|acr|helmchart|helm|file)::([A-Za-z0-9_-]+) *\}\}").unwrap();
    let replace = |text| {
        regex
            .replace_all(text, |c: &regex::Captures<'_>| values[&format!("computenest::{}::{}", &c[1], &c[2])].clone())
            .into_owned()
    };
    let (baseline, replaced) = best(|| replace(&text));
    assert!(rendered == replaced, "Berth and the regex baseline disagree on the output");

    // What any renderer that copies its output into one buffer is bound by: a plain copy of
    // the input into a buffer already faulted in.
    let mut copy = String::with_capacity(text.len());
    let (copied, _) = best(|| {
        copy.clear();
        copy.push_str(&text);
        copy.len()
    });

    // The same input as templates of at most 10 MiB, the API's limit, one after another.
    let chunks = chunks(&text);
    let (pieces_10, bytes) = best(|| chunks.iter().map(|chunk| render(chunk).1.len()).sum::<usize>());
    assert_eq!(bytes, len, "the chunks render to as many bytes as the whole");
    let (json_10, _) = best(|| chunks.iter().map(|chunk| as_json(chunk)).sum::<usize>());
    let (strings_10, _) = best(|| chunks.iter().map(|chunk| render(chunk).1.to_string().len()).sum::<usize>());
    let (regex_10, _) = best(|| chunks.iter().map(|chunk| replace(chunk).len()).sum::<usize>());

    let rate = |time| mb_per_s(text.len(), time);
    println!(
        "render: {:.1} MiB of corpus templates, {identifiers} identifiers; best of {RUNS} runs",
        text.len() as f64 / (1 << 20) as f64
    );
    let line = |what: &str, time: Duration| {
        println!(
            "render  {what:<52} {:>7.0} MB/s  {:>5.1}x regex  ({time:.2?})",
            rate(time),
            rate(time) / rate(baseline)
        );
    };
    line("berth: scan + positions + plan + pieces (the API)", ours);
    line("berth, pieces as the raw answer's HTTP chunks", as_chunks);
    line("berth, escaped into the JSON answer (fresh Vec)", as_json_time);
    line("berth, copied into a fresh String", materialised);
    line("berth, written into a reused buffer", reused);
    line("regex replace_all baseline (fresh String)", baseline);
    line("plain copy of the input into a reused buffer", copied);
    println!("render  as {} templates of <= 10 MiB, one after another:", chunks.len());
    line("  berth pieces", pieces_10);
    line("  berth escaped into JSON answers", json_10);
    line("  berth copied into fresh Strings", strings_10);
    line("  regex replace_all", regex_10);
    println!(
        "render  ratio berth / regex {:.1}x (goal >= 5x), {:.0} MB/s (goal >= 1 GB/s)",
        rate(ours) / rate(baseline),
        rate(ours)
    );
    // Against a plain copy of the same bytes, in turn with it: the bound of any renderer that
    // reads its input once, and a ratio that holds on a noisy machine.
    let mut copy_into = |texts: &[&str]| {
        copy.clear();
        texts.iter().for_each(|t| copy.push_str(t));
        copy.len()
    };
    let (copy_10, render_10) =
        paired(|| copy_into(&chunks), || chunks.iter().map(|chunk| render(chunk).1.len()).sum::<usize>());
    goals::report(Goal::at_least(
        format!("render / plain copy, corpus as {} templates <= 10 MiB", chunks.len()),
        copy_10.as_secs_f64() / render_10.as_secs_f64(),
        0.9,
        "x",
    ));
    let (copy_whole, render_whole) = paired(|| copy_into(&[&text]), || render(&text).1.len());
    goals::report(Goal::at_least(
        "render / plain copy, one 50 MiB template",
        copy_whole.as_secs_f64() / render_whole.as_secs_f64(),
        0.9,
        "x",
    ));
    goals::report(Goal::at_least(
        "render / regex replace_all, one 50 MiB template",
        rate(ours) / rate(baseline),
        5.0,
        "x",
    ));
}
